/* heatmap.h — attention weights as a PNG heat map: one coloured cell per weight, the
 * row and column labels as characters (a built-in bitmap font), a title line.
 * Legend: rows × cols, e.g. L output (query) bytes × S source (key) bytes. */
#ifndef TFM_IO_HEATMAP_H
#define TFM_IO_HEATMAP_H

#include <stdint.h>

#include "tfm.h"

/* Pixels per cell side, grid line included; and the largest width or height written. */
#define HEATMAP_CELL 16
#define HEATMAP_MAX_PX 16384

/* Where things are in the image, for writers and for tests that read it back: cell
 * (i, j) covers x in [grid_x + j·CELL, grid_x + (j+1)·CELL], y likewise from grid_y; its
 * first and last pixel lines are grid lines, the (CELL−1)² pixels between them its colour. */
typedef struct heatmap_layout {
    int64_t width, height;  /* of the image, in pixels */
    int64_t grid_x, grid_y; /* top-left corner of cell (0, 0) */
    int64_t title_y;        /* top of the title line */
    int64_t title_chars;    /* characters of the title drawn (it is clipped to the image) */
} heatmap_layout;

/* The layout for a rows × cols grid and a title of title_len bytes.
 * TFM_ERR_INVALID_ARG when rows or cols is not positive or the grid exceeds
 * HEATMAP_MAX_PX (a long title is clipped instead). */
tfm_status heatmap_layout_of(int64_t rows, int64_t cols, int64_t title_len, heatmap_layout *out);

/* The colour of a weight: viridis (perceptually ordered, dark purple 0 → yellow 1),
 * clamped to [0, 1]; NaN is a neutral grey. */
void heatmap_colour(float v, uint8_t rgb[3]);

/* A grid of rows × cols weights in [0, 1] drawn as a heat map with the characters of
 * row_labels (one byte per row, e.g. the output bytes) down the left and col_labels (one
 * byte per column, e.g. the source bytes) along the top, plus a title line; written
 * atomically (temp file + fsync + rename) as an 8-bit RGB PNG. A byte outside printable
 * ASCII is drawn as two small hex digits, a space label as '␣'. */
tfm_status heatmap_write_png(const char *path, const float *w /* (rows, cols) */, int64_t rows,
                             int64_t cols, const uint8_t *row_labels /* (rows) */,
                             const uint8_t *col_labels /* (cols) */, const char *title);

#endif
