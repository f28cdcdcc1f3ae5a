/* main.c — `tfm <subcommand> ...`: dispatch. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "tfm.h"

int cli_fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "tfm %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: tfm <command> [options]   (tfm --version: version and SIMD path)\n"
            "commands:\n"
            "  forward --model M.safetensors --input IN.safetensors --output OUT.safetensors\n"
            "          run a PyTorch module exported to safetensors on the inputs in IN\n"
            "  train --train PAIRS.tsv [--valid PAIRS.tsv] --out MODEL.safetensors [options]\n"
            "          train a byte-level seq2seq Transformer on source<TAB>target lines\n"
            "  translate --model MODEL.safetensors [--input FILE] [--batch B]\n"
            "          greedy-decode one output line per input line\n"
            "  demo [--task copy|reverse] [--steps N]\n"
            "          check an exported PyTorch model, then train the copy task and test it\n"
            "forward, train, translate and demo take --compute-type f32|bf16 (default f32:\n"
            "  PyTorch's FP32 numbers; bf16: matrix products on bf16 operands, as autocast)\n"
            "environment: TFM_CPU=avx512_bf16|avx512|avx2|generic forces the SIMD path\n"
            "  (default: the best this CPU supports); OMP_NUM_THREADS sets the threads\n");
}

int main(int argc, char **argv) {
    /* A write past a file-size limit should fail with EFBIG and be reported like a full
     * disk, not kill the process: the previous checkpoint then stays intact. */
    signal(SIGXFSZ, SIG_IGN);
    if (tfm_check_cpu_env() != TFM_OK) {
        fprintf(stderr, "tfm: TFM_CPU: %s\n", tfm_last_error());
        return 2;
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "forward")) return cmd_forward(argc - 1, argv + 1);
    if (!strcmp(argv[1], "demo")) return cmd_demo(argc - 1, argv + 1);
    if (!strcmp(argv[1], "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "translate")) return cmd_translate(argc - 1, argv + 1);
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("tfm %s\nsimd: %s\nbf16: %s%s\ncompute types: f32, bf16\n", TFM_VERSION,
               tfm_cpu_path(), tfm_bf16_path(),
               tfm_compute_type_fast(TFM_COMPUTE_BF16) ? "" : " (slow: no SIMD path for bf16)");
        return 0;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "tfm: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
