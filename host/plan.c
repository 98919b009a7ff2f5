/* plan.c — (in progress) */
