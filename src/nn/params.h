/* params.h — the one list of a module's parameters.
 *
 * Each module has a single `*_describe` function that appends its parameters in
 * PyTorch's state_dict order: name, shape, and the address of the pointer in its
 * params struct. From that list alone come the total size, the pointers into the one
 * parameter block, the state_dict names for loading and saving, and initialisation.
 */
#ifndef TFM_NN_PARAMS_H
#define TFM_NN_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/bf16.h"
#include "kernels/compute.h"
#include "tfm.h"

#define PARAM_NAME_MAX 160

/* How a parameter is initialised from scratch (PyTorch's reset_parameters). */
typedef enum param_init {
    INIT_ZERO,           /* biases of attention projections, LayerNorm bias */
    INIT_ONE,            /* LayerNorm weight */
    INIT_XAVIER_UNIFORM, /* in_proj / q,k,v_proj weights; every matrix of nn.Transformer */
    INIT_XAVIER_NORMAL,  /* bias_k, bias_v */
    INIT_KAIMING_LINEAR, /* nn.Linear weight: U(±1/√fan_in) (kaiming_uniform, a=√5) */
    INIT_LINEAR_BIAS,    /* nn.Linear bias: U(±1/√fan_in) */
} param_init;

typedef struct param_entry {
    char name[PARAM_NAME_MAX];
    int ndim;
    int64_t shape[3];
    int64_t numel;
    float **slot;      /* where the module keeps its pointer to this tensor */
    param_init init;
    int64_t fan_in;    /* for INIT_KAIMING_LINEAR / INIT_LINEAR_BIAS */
} param_entry;

typedef struct param_list {
    param_entry *items;
    size_t count, cap;
    bool failed; /* an append ran out of memory or a name was too long */
} param_list;

void param_list_init(param_list *l);
void param_list_free(param_list *l);

/* Append "<prefix><name>" with the given shape (ndim 1..3). Nothing is appended when
 * `present` is false (an optional parameter, e.g. a bias with bias=False), and then
 * *slot is set to NULL. */
void param_add(param_list *l, bool present, const char *prefix, const char *name, float **slot,
               param_init init, int64_t fan_in, int ndim, int64_t d0, int64_t d1, int64_t d2);

/* Total floats of all entries (overflow-checked: TFM_ERR_INVALID_ARG if it overflows). */
tfm_status param_list_total(const param_list *l, size_t *total);
/* Point every slot into `block` (total floats), in list order. */
void param_list_bind(const param_list *l, float *block);
const param_entry *param_list_find(const param_list *l, const char *name);
/* Initialise every entry by its rule (PyTorch's reset_parameters), drawn from seed;
 * with xavier_matrices every tensor of 2+ dimensions is xavier_uniform instead (as
 * nn.Transformer._reset_parameters and the Annotated Transformer do). */
void param_list_init_values(const param_list *l, uint64_t seed, bool xavier_matrices);

/* The bf16 twins of the list's matrices (every entry of 2+ dimensions: what the
 * products read), made when w is empty, converted again when w is stale, else kept. */
tfm_status param_list_bf16(const param_list *l, bf16_weights *w);
/* Enter the compute scope of a model with parameter list l and compute type t for one
 * call (kernels/compute.h): with bf16, w is made or refreshed first (param_list_bf16)
 * and carried. compute_leave(*previous) ends it. */
tfm_status param_list_compute_begin(const param_list *l, tfm_compute_type t, bf16_weights *w,
                                    compute_scope *previous);

/* "prefix" + "name" + "." into out (PARAM_NAME_MAX); false if too long. An empty
 * name gives just "prefix". */
bool param_prefix(char *out, const char *prefix, const char *name);

#endif
