/* encoder_layer.c — the README's example: build a TransformerEncoderLayer, run it on a
 * padded batch, print a few numbers. Uses only the public header. */
#include <stdio.h>
#include <tfm.h>

int main(void) {
    tfm_config cfg;
    tfm_config_default(&cfg, TFM_TRANSFORMER_ENCODER_LAYER);
    cfg.d_model = 16, cfg.nhead = 4, cfg.dim_feedforward = 32, cfg.batch_first = true;

    tfm_module *layer;
    if (tfm_module_create(&cfg, /*seed=*/1, &layer) != TFM_OK) {
        fprintf(stderr, "create: %s\n", tfm_last_error());
        return 1;
    }

    enum { N = 2, L = 5, E = 16 };
    static float src[N][L][E];                 /* (N, L, E): batch_first */
    static unsigned char pad[N][L] = {{0}, {0, 0, 0, 1, 1}}; /* true = padding */
    for (int n = 0; n < N; n++)
        for (int l = 0; l < L; l++)
            for (int e = 0; e < E; e++) src[n][l][e] = 0.1f * (float)((n + l + e) % 7);

    tfm_inputs in;
    tfm_inputs_init(&in);
    in.src = (tfm_tensor){.data = src, .dtype = TFM_F32, .ndim = 3, .shape = {N, L, E}};
    in.src_key_padding_mask = (tfm_tensor){.data = pad, .dtype = TFM_BOOL, .ndim = 2, .shape = {N, L}};

    tfm_outputs out;
    if (tfm_forward(layer, &in, &out) != TFM_OK) {
        fprintf(stderr, "forward: %s\n", tfm_last_error());
        tfm_module_free(layer);
        return 1;
    }
    const float *y = out.output.data; /* (N, L, E), owned by the module */
    printf("output (%lld, %lld, %lld); y[0][0][0..3] = %.4f %.4f %.4f %.4f\n",
           (long long)out.output.shape[0], (long long)out.output.shape[1],
           (long long)out.output.shape[2], y[0], y[1], y[2], y[3]);
    tfm_module_free(layer);
    return 0;
}
