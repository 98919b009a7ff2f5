/* upload.c — (in progress) */
