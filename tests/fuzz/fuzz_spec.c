/* libFuzzer target for sweep spec parsing and validation.
 *
 * Input: raw bytes taken as the text of a spec. Checks, beyond "no crash and
 * no sanitizer report": a spec that compiles has a canonical text which
 * compiles again to the same canonical text, and its first trials can be
 * generated. Built and run by tests/fuzz/run.sh (make fuzz).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "json_kinds.h"
#include "spec.h"

static sweep_spec *compile_text(const char *text, size_t len, int generic)
{
    char err[512];
    sweep_spec *spec = NULL;
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (root == NULL)
        return NULL;
    json_kinds *kinds = json_kinds_scan(text, len, root);
    if (kinds != NULL) {
        if (spec_compile(root, kinds, generic, &spec, err, sizeof(err)) != 0) {
            spec = NULL;
            if (err[0] == '\0')
                abort(); /* every rejection must explain itself */
        }
        json_kinds_free(kinds);
    }
    cJSON_Delete(root);
    return spec;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;

    for (int generic = 0; generic <= 1; generic++) {
        sweep_spec *spec = compile_text((const char *)data, size, generic);
        if (spec == NULL)
            continue;

        /* Trials can be generated; index 0 and a far index for grids. */
        uint64_t count = 0;
        int bounded = spec_trial_count(spec, &count);
        uint64_t indexes[3] = {0, 1, bounded && count > 0 ? count - 1 : 12345};
        for (int i = 0; i < 3; i++) {
            if (bounded && indexes[i] >= count)
                continue;
            cJSON *params = spec_trial_params(spec, 42, indexes[i]);
            if (params == NULL)
                abort();
            char *printed = cJSON_PrintUnformatted(params);
            free(printed);
            cJSON_Delete(params);
        }

        /* The canonical text is a fixed point of compile + print. */
        char *canon = spec_canonical_text(spec);
        if (canon == NULL)
            abort();
        sweep_spec *again = compile_text(canon, strlen(canon), generic);
        if (again == NULL)
            abort();
        char *canon2 = spec_canonical_text(again);
        if (canon2 == NULL || strcmp(canon, canon2) != 0)
            abort();
        cJSON_free(canon2);
        cJSON_free(canon);
        spec_free(again);
        spec_free(spec);
    }
    return 0;
}
