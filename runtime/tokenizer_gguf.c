/* tokenizer_gguf.c — placeholder, being written. */
typedef int qilin_placeholder_tokenizer_gguf;
