/* tokenizer_tiktoken.c — placeholder, being written. */
typedef int qilin_placeholder_tokenizer_tiktoken;
