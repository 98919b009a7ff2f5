/* cmd_tokenize.c — placeholder, being written. */
typedef int qilin_placeholder_cmd_tokenize;
