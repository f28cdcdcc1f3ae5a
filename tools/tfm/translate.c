/* translate.c — `tfm translate --model MODEL.safetensors [--input FILE] [--beam K]
 * [--batch B] [--max-len N] [--length-penalty A] [--nbest K] [--no-cache] [--attn-png DIR]`:
 * one output line per source line (stdin or FILE), in input order. Sources are decoded
 * B at a time with a key/value cache (--no-cache: by full recomputation, for checking);
 * --beam K > 1 is beam search with GNMT's length penalty (alpha 1 unless given); --nbest K prints the K best
 * hypotheses of each line, TAB-separated; --attn-png DIR writes, per line and decoder
 * layer, a heat map of the cross-attention (heads averaged): DIR/NNNNN.layerL.png. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "core/status.h"
#include "decode/search.h"
#include "io/heatmap.h"
#include "train/tokenizer.h"
#include "train/trainer.h"

typedef struct translate_args {
    const char *model, *input, *attn_dir;
    tfm_compute_type compute;
    size_t batch;
    search_config search;
} translate_args;

static const char usage[] =
    "usage: tfm translate --model MODEL.safetensors [--input FILE] [--beam K] [--batch B]\n"
    "                     [--max-len N] [--length-penalty A] [--nbest K] [--no-cache]\n"
    "                     [--attn-png DIR] [--compute-type f32|bf16]";

static int parse_args(int argc, char **argv, translate_args *a) {
    search_config_default(&a->search);
    a->batch = 32;
    a->search.max_len = 1 << 20; /* clamped to the model's */
    a->search.length_penalty = 1.0; /* GNMT alpha for beam search (greedy ignores it) */
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--no-cache")) {
            a->search.no_cache = true;
            continue;
        }
        if (i + 1 >= argc) return cli_fail("translate", "%s needs a value\n%s", f, usage);
        const char *v = argv[++i];
        char *end;
        double x = strtod(v, &end);
        bool num = *v && !*end;
        if (!strcmp(f, "--model")) a->model = v;
        else if (!strcmp(f, "--input")) a->input = v;
        else if (!strcmp(f, "--attn-png")) a->attn_dir = v;
        else if (!strcmp(f, "--compute-type")) {
            if (tfm_compute_type_from_name(v, &a->compute) != TFM_OK)
                return cli_fail("translate", "--compute-type: f32 or bf16\n%s", usage);
        }
        else if (!num) return cli_fail("translate", "%s: \"%s\" is not a number\n%s", f, v, usage);
        else if (!strcmp(f, "--beam") && x >= 1 && x <= 256) a->search.beam = (int64_t)x;
        else if (!strcmp(f, "--batch") && x >= 1 && x <= 4096) a->batch = (size_t)x;
        else if (!strcmp(f, "--max-len") && x >= 1 && x <= (1 << 20)) a->search.max_len = (int64_t)x;
        else if (!strcmp(f, "--nbest") && x >= 1 && x <= 256) a->search.nbest = (int64_t)x;
        else if (!strcmp(f, "--length-penalty") && x >= 0 && x <= 10) a->search.length_penalty = x;
        else return cli_fail("translate", "bad option or value: %s %s\n%s", f, v, usage);
    }
    if (!a->model) return cli_fail("translate", "--model is required\n%s", usage);
    if (a->search.nbest > a->search.beam)
        return cli_fail("translate", "--nbest (%lld) cannot exceed --beam (%lld)",
                        (long long)a->search.nbest, (long long)a->search.beam);
    a->search.record_attn = a->attn_dir != NULL;
    return 0;
}

/* One heat map per decoder layer for hypothesis h of source line `line`. */
static tfm_status write_maps(const translate_args *a, const seq2seq *m, size_t line,
                             const char *src, size_t slen, int64_t S, const search_hyp *h) {
    const int64_t Ly = m->tr_cfg.decoder.num_layers, L = h->len;
    if (L == 0) return TFM_OK;
    uint8_t *rows = malloc((size_t)L);
    float *w = malloc(sizeof(float) * (size_t)L * (slen ? slen : 1));
    tfm_status st = rows && w ? TFM_OK : tfm_error(TFM_ERR_NOMEM, "out of memory");
    for (int64_t j = 0; st == TFM_OK && j < L; j++) {
        int32_t t = h->tokens[j];
        rows[j] = t >= TOK_BYTE0 ? (uint8_t)(t - TOK_BYTE0) : t == TOK_EOS ? '$' : '?';
    }
    char path[4096], title[256];
    for (int64_t l = 0; st == TFM_OK && l < Ly && slen > 0; l++) {
        for (int64_t j = 0; j < L; j++) /* the real source columns of (Ly, len, S) */
            memcpy(w + j * (int64_t)slen, h->attn + (l * L + j) * S, slen * sizeof(float));
        snprintf(path, sizeof path, "%s/%05zu.layer%lld.png", a->attn_dir, line + 1, (long long)l);
        snprintf(title, sizeof title, "line %zu, decoder layer %lld: cross-attention", line + 1, (long long)l);
        st = heatmap_write_png(path, w, L, (int64_t)slen, rows, (const uint8_t *)src, title);
    }
    free(rows);
    free(w);
    return st;
}

/* Decode lines[0..n) (line numbers first..first+n) and print them. */
static int flush_batch(const translate_args *a, seq2seq *m, char **lines, size_t *lens, size_t n,
                       size_t first) {
    size_t S = 1;
    for (size_t i = 0; i < n; i++)
        if (lens[i] > S) S = lens[i];
    const int64_t K = a->search.nbest;
    int32_t *src = calloc(n * S, sizeof *src);
    uint8_t *pad = calloc(n * S, 1);
    search_hyp *hyp = calloc(n * (size_t)K, sizeof *hyp);
    char *text = malloc((size_t)m->cfg.max_len + 1);
    int rc = 0;
    if (!src || !pad || !hyp || !text) {
        rc = cli_fail("translate", "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        tok_encode(lines[i], lens[i], false, false, src + i * S);
        for (size_t j = lens[i]; j < S; j++) src[i * S + j] = TOK_PAD, pad[i * S + j] = 1;
        if (lens[i] == 0) src[i * S] = TOK_EOS, pad[i * S] = 0; /* an empty line still has a key */
    }
    if (search_translate(m, src, pad, (int64_t)n, (int64_t)S, &a->search, hyp) != TFM_OK) {
        rc = cli_fail("translate", "%s", tfm_last_error());
        goto done;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        for (int64_t k = 0; k < K; k++) {
            const search_hyp *h = &hyp[i * (size_t)K + (size_t)k];
            size_t len = 0;
            if (tok_decode(h->tokens, (size_t)h->len, text, (size_t)m->cfg.max_len, &len) != TFM_OK) {
                rc = cli_fail("translate", "%s", tfm_last_error());
                break;
            }
            if (k) fputc('\t', stdout);
            fwrite(text, 1, len, stdout);
        }
        fputc('\n', stdout);
        if (rc == 0 && a->attn_dir &&
            write_maps(a, m, first + i, lines[i], lens[i], (int64_t)S, &hyp[i * (size_t)K]) != TFM_OK)
            rc = cli_fail("translate", "%s", tfm_last_error());
    }
    fflush(stdout);
done:
    if (hyp) search_hyp_free(hyp, (int64_t)n * K);
    free(hyp);
    free(src);
    free(pad);
    free(text);
    return rc;
}

int cmd_translate(int argc, char **argv) {
    translate_args a = {0};
    if (parse_args(argc, argv, &a)) return 1;
    if (a.attn_dir && mkdir(a.attn_dir, 0777) != 0 && errno != EEXIST)
        return cli_fail("translate", "%s: %s", a.attn_dir, strerror(errno));
    seq2seq m;
    train_options o;
    train_progress p;
    if (checkpoint_load(a.model, &m, NULL, &o, &p) != TFM_OK)
        return cli_fail("translate", "%s", tfm_last_error());
    m.compute = a.compute;
    FILE *f = a.input ? fopen(a.input, "r") : stdin;
    if (!f) {
        seq2seq_free(&m);
        return cli_fail("translate", "%s: %s", a.input, strerror(errno));
    }
    char **lines = calloc(a.batch, sizeof *lines);
    size_t *lens = calloc(a.batch, sizeof *lens), n = 0, cap = 0, lineno = 0;
    char *line = NULL;
    ssize_t len;
    int rc = lines && lens ? 0 : cli_fail("translate", "out of memory");
    while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len > m.cfg.max_len) {
            rc = cli_fail("translate", "%s:%zu: a line of %zd bytes is longer than the model's max_len %lld",
                          a.input ? a.input : "stdin", lineno, len, (long long)m.cfg.max_len);
            break;
        }
        if (!(lines[n] = strdup(line))) {
            rc = cli_fail("translate", "out of memory");
            break;
        }
        lens[n] = (size_t)len;
        if (++n == a.batch) {
            rc = flush_batch(&a, &m, lines, lens, n, lineno - n);
            for (size_t i = 0; i < n; i++) free(lines[i]);
            n = 0;
        }
    }
    if (rc == 0 && n) rc = flush_batch(&a, &m, lines, lens, n, lineno - n);
    for (size_t i = 0; lines && i < n; i++) free(lines[i]);
    free(lines);
    free(lens);
    free(line);
    if (a.input) fclose(f);
    seq2seq_free(&m);
    return rc;
}
