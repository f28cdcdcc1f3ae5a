/*
 * tfm.h — the one public header of tfm: multi-head attention and the Transformer
 * with the semantics and state_dict names of PyTorch's torch.nn modules.
 *
 * Every function returns a tfm_status (TFM_OK = 0); on failure tfm_last_error()
 * (thread-local) says what went wrong. The library never prints and never exits.
 *
 * Shapes follow PyTorch: a module with batch_first = false takes (L, N, E), with
 * batch_first = true (N, L, E); unbatched inputs are (L, E). Legend: N batch,
 * L target (query) length, S source (key) length, E embedding dim, H heads.
 */
#ifndef TFM_H
#define TFM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes ---------------------------------------------------------- */
typedef enum tfm_status {
    TFM_OK = 0,              /* success */
    TFM_ERR_INVALID_ARG = 1, /* an argument or configuration value is not allowed */
    TFM_ERR_NOMEM = 2,       /* a memory allocation failed */
    TFM_ERR_IO = 3,          /* a file could not be opened, read, written or renamed */
    TFM_ERR_FORMAT = 4,      /* a file is malformed (header, JSON, offsets, dtypes) */
    TFM_ERR_SHAPE = 5,       /* a tensor's shape does not fit the module or its peers */
    TFM_ERR_MISSING = 6,     /* a required tensor or parameter is absent */
    TFM_ERR_UNEXPECTED = 7,  /* a tensor that the module does not know is present */
    TFM_ERR_UNSUPPORTED = 8, /* valid, but not something tfm implements */
} tfm_status;

/* The message for the last error on this thread ("" when none). */
const char *tfm_last_error(void);
/* A fixed description of a status code. */
const char *tfm_status_string(tfm_status s);

/* ---- tensors --------------------------------------------------------------- */
typedef enum tfm_dtype {
    TFM_F32 = 0,  /* float */
    TFM_BOOL = 1, /* one byte per element, 0 or 1 */
} tfm_dtype;

#define TFM_MAX_DIMS 4

/* A view of caller-owned (or module-owned) contiguous row-major data.
 * A tensor whose data is NULL is "absent" (an optional argument not given). */
typedef struct tfm_tensor {
    void *data;
    tfm_dtype dtype;
    int ndim;
    int64_t shape[TFM_MAX_DIMS];
} tfm_tensor;

/* ---- modules ----------------------------------------------------------------- */
typedef enum tfm_module_kind {
    TFM_MULTIHEAD_ATTENTION = 0,
    TFM_TRANSFORMER_ENCODER_LAYER = 1,
    TFM_TRANSFORMER_ENCODER = 2,
    TFM_TRANSFORMER_DECODER_LAYER = 3,
    TFM_TRANSFORMER_DECODER = 4,
    TFM_TRANSFORMER = 5,
} tfm_module_kind;

typedef enum tfm_activation { TFM_RELU = 0, TFM_GELU = 1 } tfm_activation;

/* Constructor arguments under PyTorch's names. tfm_config_default() fills
 * PyTorch's defaults; a field a module kind does not take is ignored. */
typedef struct tfm_config {
    tfm_module_kind module;
    /* nn.MultiheadAttention */
    int64_t embed_dim, num_heads;
    int64_t kdim, vdim; /* 0 = embed_dim */
    bool add_bias_kv, add_zero_attn;
    /* nn.Transformer{Encoder,Decoder}Layer */
    int64_t d_model, nhead, dim_feedforward;
    tfm_activation activation;
    double layer_norm_eps;
    bool norm_first;
    /* nn.Transformer{Encoder,Decoder}: layer count and optional final LayerNorm */
    int64_t num_layers;
    bool norm;
    /* nn.Transformer */
    int64_t num_encoder_layers, num_decoder_layers;
    /* all */
    bool bias, batch_first;
    double dropout; /* used in training mode only (tfm_module_train) */
} tfm_config;

/* The module's name as PyTorch spells it ("TransformerEncoderLayer"), and back. */
const char *tfm_module_name(tfm_module_kind kind);
tfm_status tfm_module_kind_from_name(const char *name, tfm_module_kind *out);
void tfm_config_default(tfm_config *cfg, tfm_module_kind kind);

typedef struct tfm_module tfm_module;

/* A new module with PyTorch's initialisation (xavier_uniform matrices, zero
 * attention biases, LayerNorm 1/0), drawn from `seed`. */
tfm_status tfm_module_create(const tfm_config *cfg, uint64_t seed, tfm_module **out);
/* Load a state_dict saved as safetensors; the module kind and the constructor
 * arguments come from the file's __metadata__ (see README, "tfm forward"). */
tfm_status tfm_module_load(const char *path, tfm_module **out);
/* Save the state_dict (F32) with its config in __metadata__, atomically. */
tfm_status tfm_module_save(const tfm_module *m, const char *path);
void tfm_module_free(tfm_module *m);

const tfm_config *tfm_module_config(const tfm_module *m);
/* Parameters in state_dict order: name (e.g. "layers.0.self_attn.in_proj_weight")
 * and a view of the module's own storage, which may be written to. */
size_t tfm_module_num_params(const tfm_module *m);
tfm_status tfm_module_param(const tfm_module *m, size_t i, const char **name, tfm_tensor *view);

/* Forward arguments under PyTorch's forward() names; absent tensors have data == NULL.
 * Masks are TFM_BOOL (true = masked out) or TFM_F32 (added to the scores).
 *   MultiheadAttention:        query key value key_padding_mask attn_mask
 *                              need_weights average_attn_weights is_causal
 *   TransformerEncoderLayer:   src src_mask src_key_padding_mask is_causal
 *   TransformerEncoder:        src mask src_key_padding_mask is_causal
 *   TransformerDecoderLayer/Decoder: tgt memory tgt_mask memory_mask tgt_key_padding_mask
 *                              memory_key_padding_mask tgt_is_causal memory_is_causal
 *   Transformer:               src tgt src_mask tgt_mask memory_mask src_key_padding_mask
 *                              tgt_key_padding_mask memory_key_padding_mask
 *                              src_is_causal tgt_is_causal memory_is_causal */
typedef struct tfm_inputs {
    tfm_tensor query, key, value, key_padding_mask, attn_mask;
    tfm_tensor src, tgt, memory;
    tfm_tensor src_mask, mask, tgt_mask, memory_mask;
    tfm_tensor src_key_padding_mask, tgt_key_padding_mask, memory_key_padding_mask;
    bool need_weights, average_attn_weights;
    bool is_causal, src_is_causal, tgt_is_causal, memory_is_causal;
} tfm_inputs;

/* Defaults as in PyTorch: everything absent, need_weights = false for the CLI's
 * sake (PyTorch's MultiheadAttention defaults to true), average_attn_weights = true. */
void tfm_inputs_init(tfm_inputs *in);

/* Outputs live in the module's memory and stay valid until the next forward or free.
 * attn_weights (MultiheadAttention with need_weights only): (N, L, S) averaged over
 * heads, or (N, H, L, S); unbatched: (L, S) or (H, L, S). */
typedef struct tfm_outputs {
    tfm_tensor output;
    tfm_tensor attn_weights;
} tfm_outputs;

/* Evaluation-mode forward pass. */
tfm_status tfm_forward(tfm_module *m, const tfm_inputs *in, tfm_outputs *out);

/* ---- compute type -------------------------------------------------------------
 * What the matrix products compute in, as CTranslate2 calls it and as PyTorch's CPU
 * autocast does it:
 *   TFM_COMPUTE_F32   (default) FP32 everywhere: PyTorch's FP32 numbers.
 *   TFM_COMPUTE_BF16  the matrix products (linear layers, Q·Kᵀ, P·V, and in training
 *                     their backward products) take bf16 operands, rounded to nearest
 *                     even, with FP32 accumulation; softmax statistics, LayerNorm,
 *                     residual adds, activations, loss and optimizer stay FP32, and so
 *                     do the parameters a caller sees (the FP32 master copy).
 * bf16 weights: the module keeps a bf16 copy of its parameters, made from the FP32
 * master the first time a bf16 product needs it. It is refreshed by tfm's own
 * optimizer after every step, and made anew after tfm_module_load/create and
 * tfm_module_set_compute_type. A caller who WRITES parameters through the views of
 * tfm_module_param must then call tfm_module_params_changed before the next forward;
 * asking for a view (tfm_module_param) also marks the copy stale, so writing right
 * after asking is safe without it.
 * Every CPU runs bf16: with bf16 instructions fast, without them on a reference path
 * that gives the same numbers (see tfm_bf16_path). */
typedef enum tfm_compute_type { TFM_COMPUTE_F32 = 0, TFM_COMPUTE_BF16 = 1 } tfm_compute_type;

/* "f32" / "bf16", and back (TFM_ERR_INVALID_ARG for any other name). */
const char *tfm_compute_type_name(tfm_compute_type t);
tfm_status tfm_compute_type_from_name(const char *name, tfm_compute_type *out);

tfm_status tfm_module_set_compute_type(tfm_module *m, tfm_compute_type t);
tfm_compute_type tfm_module_compute_type(const tfm_module *m);
/* The caller wrote parameters through tfm_module_param views: the bf16 copy is stale. */
void tfm_module_params_changed(tfm_module *m);

/* How this CPU runs bf16 products on the active path: "avx512_bf16" (VDPBF16PS),
 * "fma" (FP32 FMAs on bf16 values: where VDPBF16PS is slower than FP32 FMAs, same
 * numbers), or "reference" (plain C, same numbers, slow). */
const char *tfm_bf16_path(void);
/* Whether compute type t runs at its full speed here (bf16: a SIMD path). */
bool tfm_compute_type_fast(tfm_compute_type t);

/* ---- training ----------------------------------------------------------------
 * tfm_forward_train runs the forward pass and keeps what tfm_backward needs; the
 * inputs (and masks) must stay unchanged until tfm_backward. Gradients of the
 * parameters ACCUMULATE across backward calls until tfm_zero_grad, as in PyTorch. */

/* PyTorch's module.train() / .eval(): in training mode dropout (cfg.dropout) applies,
 * drawn from `seed` and the number of forward passes since this call. */
void tfm_module_train(tfm_module *m, bool training, uint64_t seed);
tfm_status tfm_forward_train(tfm_module *m, const tfm_inputs *in, tfm_outputs *out);

/* Gradients of the float inputs, in the inputs' layouts (module-owned, valid until the
 * next call); absent ones have data == NULL. For MultiheadAttention each of query,
 * key and value gets its own gradient even when they are the same data. */
typedef struct tfm_input_grads {
    tfm_tensor query, key, value; /* MultiheadAttention */
    tfm_tensor src, tgt, memory;  /* layers, stacks, Transformer */
} tfm_input_grads;

/* grad_output: the gradient of a scalar loss with respect to the last
 * tfm_forward_train's output (same shape). */
tfm_status tfm_backward(tfm_module *m, const tfm_tensor *grad_output, tfm_input_grads *grads);
void tfm_zero_grad(tfm_module *m);
/* The gradient of parameter i (same order and names as tfm_module_param); available
 * after the first tfm_forward_train. */
tfm_status tfm_module_grad(const tfm_module *m, size_t i, const char **name, tfm_tensor *view);

/* ---- seq2seq models trained by `tfm train`: step-by-step decoding ---------------
 * Tokens are bytes: PAD 0, BOS 1, EOS 2, byte b is 3 + b (vocabulary 259). */
enum { TFM_TOKEN_PAD = 0, TFM_TOKEN_BOS = 1, TFM_TOKEN_EOS = 2, TFM_TOKEN_BYTE0 = 3 };

typedef struct tfm_translator tfm_translator;
tfm_status tfm_translator_load(const char *path, tfm_translator **out);
void tfm_translator_free(tfm_translator *t);
int64_t tfm_translator_vocab(const tfm_translator *t);
/* The longest source, and the most tokens a decoder can be fed (BOS included). */
int64_t tfm_translator_max_len(const tfm_translator *t);
/* The compute type of decoders started afterwards (default TFM_COMPUTE_F32). */
tfm_status tfm_translator_set_compute_type(tfm_translator *t, tfm_compute_type ct);

/* A decoding in progress, one row per source, with a key/value cache: each step costs
 * one token's worth of work, not the whole prefix's. */
typedef struct tfm_decoder tfm_decoder;
/* Encode n sources (sources[i]: lens[i] bytes) once; rows start empty. */
tfm_status tfm_decoder_start(tfm_translator *t, const char *const *sources, const size_t *lens,
                             int64_t n, tfm_decoder **out);
/* Feed one token per row (TFM_TOKEN_BOS first) and get logprobs (n, vocab): the
 * log-probabilities of each row's next token. */
tfm_status tfm_decoder_step(tfm_decoder *d, const int32_t *tokens, float *logprobs);
/* Row r takes over the state of row rows[r] (for beam search bookkeeping). */
tfm_status tfm_decoder_reorder(tfm_decoder *d, const int32_t *rows);
void tfm_decoder_free(tfm_decoder *d);

/* nn.Transformer.generate_square_subsequent_mask: out (sz, sz), 0 on and below the
 * diagonal, -inf above. */
tfm_status tfm_generate_square_subsequent_mask(int64_t sz, float *out);

/* Threads used by tfm's own kernels (OpenMP); <= 0 restores the default. Results do
 * not depend on it. */
void tfm_set_num_threads(int n);

/* The instruction-set path of the SIMD kernels: "avx512", "avx2" or "generic" (plain C
 * the compiler vectorises for the baseline ISA). Chosen on first use as the best the CPU
 * supports, or as the environment variable TFM_CPU says. Results agree across paths to
 * rounding (summation order differs), not bit for bit. */
const char *tfm_cpu_path(void);

/* Force a path by name (NULL or "" = the best supported). TFM_ERR_INVALID_ARG for an
 * unknown name, TFM_ERR_UNSUPPORTED for a path this CPU or build cannot run. Call it
 * before any other tfm work runs, from one thread. */
tfm_status tfm_set_cpu_path(const char *name);

/* TFM_OK if TFM_CPU is unset or names a path this machine can take; otherwise the
 * error tfm_set_cpu_path would give (the kernels then use the best supported path). */
tfm_status tfm_check_cpu_env(void);

#ifdef __cplusplus
}
#endif
#endif /* TFM_H */
