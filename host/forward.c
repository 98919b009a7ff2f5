/* forward.c — (in progress) */
