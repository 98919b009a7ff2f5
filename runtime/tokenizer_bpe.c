/* tokenizer_bpe.c — placeholder, being written. */
typedef int qilin_placeholder_tokenizer_bpe;
