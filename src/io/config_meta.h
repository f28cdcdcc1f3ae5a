/* config_meta.h — a module's constructor arguments as safetensors __metadata__
 * strings, under PyTorch's argument names ("module", "d_model", "norm_first", ...). */
#ifndef TFM_IO_CONFIG_META_H
#define TFM_IO_CONFIG_META_H

#include "io/safetensors.h"
#include "tfm.h"

/* Read "module" and the arguments that module takes; a missing argument takes
 * PyTorch's default. A malformed value is TFM_ERR_FORMAT naming the key. The
 * result is checked with config_check. */
tfm_status config_from_meta(const st_file *f, tfm_config *cfg);
/* Write "module" and every argument of the module kind. */
tfm_status config_to_meta(const tfm_config *cfg, st_writer *w);
/* Values a module can be built with: positive sizes, divisibility, known activation. */
tfm_status config_check(const tfm_config *cfg);

/* "true"/"false" (also "True"/"False"/"1"/"0"), for input metadata flags. */
tfm_status meta_parse_bool(const char *key, const char *value, bool *out);

#endif
