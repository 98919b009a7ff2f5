/* cluster.c — see cluster.h. (Placeholder: being written.) */
#include "host/cluster.h"

qilin_status qilin_cluster_open(const qilin_cluster_options *o, qilin_cluster **out) {
    (void)o;
    *out = NULL;
    return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_cluster_open: not implemented yet");
}
void qilin_cluster_close(qilin_cluster *c) { (void)c; }
int qilin_cluster_nodes(const qilin_cluster *c) { (void)c; return 1; }
int qilin_cluster_node_rank(const qilin_cluster *c) { (void)c; return 0; }
qilin_status qilin_cluster_send_all(qilin_cluster *c, uint32_t type, const void *data, size_t bytes) {
    (void)c, (void)type, (void)data, (void)bytes;
    return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_cluster_send_all: not implemented yet");
}
qilin_status qilin_cluster_recv(qilin_cluster *c, uint32_t *type, void **data, size_t *bytes) {
    (void)c, (void)type, (void)data, (void)bytes;
    return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_cluster_recv: not implemented yet");
}
void qilin_cluster_report(qilin_cluster *c, const char *message) { (void)c, (void)message; }
qilin_status qilin_cluster_watch(qilin_cluster *c, qilin_cluster_failure_fn on_failure, void *user) {
    (void)c, (void)on_failure, (void)user;
    return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_cluster_watch: not implemented yet");
}
void qilin_cluster_arm(qilin_cluster *c, int armed) { (void)c, (void)armed; }
