/* patched_config.h — a fixture's config.json with some keys changed, written
 * as config.json in a temp directory of its own (removed at the end), for the
 * tests that feed the config reader careless or hostile values.
 *
 * `patch` is a JSON object: each key is set to its value, a null deletes the
 * key. `edit`, when given, changes the parsed config further before it is
 * written (values too large to spell as a literal). */
#ifndef QILIN_TESTS_PATCHED_CONFIG_H
#define QILIN_TESTS_PATCHED_CONFIG_H

#include <jansson.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

struct PatchedConfig {
    std::string dir, path;
    PatchedConfig(const char *fixture, const char *patch, const std::function<void(json_t *)> &edit = {}) {
        char tmpl[] = "/tmp/qilin_config_XXXXXX";
        dir = mkdtemp(tmpl);
        path = dir + "/config.json";
        std::string src = std::string(QILIN_SOURCE_DIR) + "/tests/fixtures/models/" + fixture + "/config.json";
        json_error_t je;
        json_t *cfg = json_load_file(src.c_str(), 0, &je);
        if (patch) {
            json_t *p = json_loads(patch, 0, &je);
            const char *key;
            json_t *v;
            json_object_foreach(p, key, v) {
                if (json_is_null(v))
                    json_object_del(cfg, key);
                else
                    json_object_set(cfg, key, v);
            }
            json_decref(p);
        }
        if (edit) edit(cfg);
        json_dump_file(cfg, path.c_str(), 0);
        json_decref(cfg);
    }
    ~PatchedConfig() {
        std::remove(path.c_str());
        rmdir(dir.c_str());
    }
};

#endif /* QILIN_TESTS_PATCHED_CONFIG_H */
