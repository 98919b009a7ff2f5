/* jinja.c — placeholder, being written. */
typedef int qilin_placeholder_jinja;
