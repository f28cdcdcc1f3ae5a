/* translate.c — `tfm translate --model MODEL.safetensors [--input FILE] [--batch B]`:
 * one greedy output line per source line (stdin or FILE), in input order. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/status.h"
#include "train/trainer.h"

/* Translate and print lines[0..n). */
static int flush_batch(seq2seq *m, char **lines, size_t *lens, size_t n) {
    char *outs[256];
    if (translate_batch(m, (const uint8_t *const *)lines, lens, n, outs) != TFM_OK)
        return cli_fail("translate", "%s", tfm_last_error());
    for (size_t i = 0; i < n; i++) {
        fputs(outs[i], stdout);
        fputc('\n', stdout);
        free(outs[i]);
    }
    fflush(stdout);
    return 0;
}

int cmd_translate(int argc, char **argv) {
    const char *model = NULL, *input = NULL;
    size_t batch = 32;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) return cli_fail("translate", "%s needs a value", argv[i]);
        if (!strcmp(argv[i], "--model")) model = argv[++i];
        else if (!strcmp(argv[i], "--input")) input = argv[++i];
        else if (!strcmp(argv[i], "--batch")) {
            char *end;
            long b = strtol(argv[++i], &end, 10);
            if (*end || b < 1 || b > 256) return cli_fail("translate", "--batch must be in [1, 256]");
            batch = (size_t)b;
        } else
            return cli_fail("translate", "unknown option '%s' (usage: tfm translate --model M "
                                         "[--input FILE] [--batch B])", argv[i]);
    }
    if (!model) return cli_fail("translate", "--model is required");
    seq2seq m;
    train_options o;
    train_progress p;
    if (checkpoint_load(model, &m, NULL, &o, &p) != TFM_OK)
        return cli_fail("translate", "%s", tfm_last_error());
    FILE *f = input ? fopen(input, "r") : stdin;
    if (!f) {
        seq2seq_free(&m);
        return cli_fail("translate", "%s: %s", input, strerror(errno));
    }
    char *lines[256] = {0};
    size_t lens[256], n = 0, cap = 0, lineno = 0;
    char *line = NULL;
    ssize_t len;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len >= m.cfg.max_len) {
            rc = cli_fail("translate", "%s:%zu: line of %zd bytes is longer than the model's max_len %lld",
                          input ? input : "stdin", lineno, len, (long long)m.cfg.max_len);
            break;
        }
        lines[n] = strdup(line);
        lens[n] = (size_t)len;
        if (!lines[n]) rc = cli_fail("translate", "out of memory");
        else if (++n == batch) {
            rc = flush_batch(&m, lines, lens, n);
            for (size_t i = 0; i < n; i++) free(lines[i]);
            n = 0;
        }
    }
    if (rc == 0 && n) rc = flush_batch(&m, lines, lens, n);
    for (size_t i = 0; i < n; i++) free(lines[i]);
    free(line);
    if (input) fclose(f);
    seq2seq_free(&m);
    return rc;
}
