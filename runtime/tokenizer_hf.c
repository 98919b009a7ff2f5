/* tokenizer_hf.c — placeholder, being written. */
typedef int qilin_placeholder_tokenizer_hf;
