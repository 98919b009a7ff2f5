/* tokenizer_split.c — placeholder, being written. */
typedef int qilin_placeholder_tokenizer_split;
