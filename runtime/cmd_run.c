/* cmd_run.c — placeholder, being written. */
typedef int qilin_placeholder_cmd_run;
