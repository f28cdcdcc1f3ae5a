/* data.h — the data pipeline of `tfm train`, in one include:
 *   tokenizer.h  byte-level ids (PAD 0, BOS 1, EOS 2, byte b → 3 + b)
 *   tsv.h        reading and validating source<TAB>target files
 *   batch.h      shuffled, bucketed, resumable batches with padding masks */
#ifndef TFM_TRAIN_DATA_H
#define TFM_TRAIN_DATA_H

#include "train/batch.h"
#include "train/tokenizer.h"
#include "train/tsv.h"

#endif
