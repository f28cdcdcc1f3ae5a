/* heatmap.c — attention weights drawn as a PNG heat map (see heatmap.h).
 *
 * Legend: rows × cols weights w (row-major), e.g. L output bytes × S source bytes.
 * The image is rendered one pixel row at a time straight into libpng (classic API), so
 * memory is O(width) whatever the grid; libpng's errors come back through setjmp as
 * TFM_ERR_IO. The file is written beside `path` and renamed over it, as safetensors.c does.
 */
#include "io/heatmap.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <png.h>

#include "core/status.h"
#include "io/fileio.h"

/* ---- geometry (pixels) ------------------------------------------------------- */
#define MARGIN 8
#define LABEL_GAP 2  /* between a label box and the grid */
#define TITLE_H 16   /* the title line */
#define TITLE_GAP 6  /* below the title line */
#define GLYPH_W 5
#define GLYPH_H 7
#define SCALE 2                        /* labels and title: 10 × 14 px glyphs */
#define ADVANCE ((GLYPH_W + 1) * SCALE) /* title character pitch */

/* ---- font -------------------------------------------------------------------- */
/* 5 × 7 glyphs for ASCII 32..126, then '␣' (a visible space, for labels) at 127.
 * Five columns per glyph, left to right; bit r of a column is row r from the top. */
#define GLYPH_SPACE_MARK 127
static const uint8_t font[96][GLYPH_W] = {
    {0x00, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x5F, 0x00, 0x00}, /* space ! */
    {0x00, 0x07, 0x00, 0x07, 0x00}, {0x14, 0x7F, 0x14, 0x7F, 0x14}, /* " # */
    {0x24, 0x2A, 0x7F, 0x2A, 0x12}, {0x23, 0x13, 0x08, 0x64, 0x62}, /* $ % */
    {0x36, 0x49, 0x55, 0x22, 0x50}, {0x00, 0x05, 0x03, 0x00, 0x00}, /* & ' */
    {0x00, 0x1C, 0x22, 0x41, 0x00}, {0x00, 0x41, 0x22, 0x1C, 0x00}, /* ( ) */
    {0x14, 0x08, 0x3E, 0x08, 0x14}, {0x08, 0x08, 0x3E, 0x08, 0x08}, /* * + */
    {0x00, 0x50, 0x30, 0x00, 0x00}, {0x08, 0x08, 0x08, 0x08, 0x08}, /* , - */
    {0x00, 0x60, 0x60, 0x00, 0x00}, {0x20, 0x10, 0x08, 0x04, 0x02}, /* . / */
    {0x3E, 0x51, 0x49, 0x45, 0x3E}, {0x00, 0x42, 0x7F, 0x40, 0x00}, /* 0 1 */
    {0x42, 0x61, 0x51, 0x49, 0x46}, {0x21, 0x41, 0x45, 0x4B, 0x31}, /* 2 3 */
    {0x18, 0x14, 0x12, 0x7F, 0x10}, {0x27, 0x45, 0x45, 0x45, 0x39}, /* 4 5 */
    {0x3C, 0x4A, 0x49, 0x49, 0x30}, {0x01, 0x71, 0x09, 0x05, 0x03}, /* 6 7 */
    {0x36, 0x49, 0x49, 0x49, 0x36}, {0x06, 0x49, 0x49, 0x29, 0x1E}, /* 8 9 */
    {0x00, 0x36, 0x36, 0x00, 0x00}, {0x00, 0x56, 0x36, 0x00, 0x00}, /* : ; */
    {0x08, 0x14, 0x22, 0x41, 0x00}, {0x14, 0x14, 0x14, 0x14, 0x14}, /* < = */
    {0x00, 0x41, 0x22, 0x14, 0x08}, {0x02, 0x01, 0x51, 0x09, 0x06}, /* > ? */
    {0x32, 0x49, 0x79, 0x41, 0x3E}, {0x7E, 0x11, 0x11, 0x11, 0x7E}, /* @ A */
    {0x7F, 0x49, 0x49, 0x49, 0x36}, {0x3E, 0x41, 0x41, 0x41, 0x22}, /* B C */
    {0x7F, 0x41, 0x41, 0x22, 0x1C}, {0x7F, 0x49, 0x49, 0x49, 0x41}, /* D E */
    {0x7F, 0x09, 0x09, 0x09, 0x01}, {0x3E, 0x41, 0x49, 0x49, 0x7A}, /* F G */
    {0x7F, 0x08, 0x08, 0x08, 0x7F}, {0x00, 0x41, 0x7F, 0x41, 0x00}, /* H I */
    {0x20, 0x40, 0x41, 0x3F, 0x01}, {0x7F, 0x08, 0x14, 0x22, 0x41}, /* J K */
    {0x7F, 0x40, 0x40, 0x40, 0x40}, {0x7F, 0x02, 0x0C, 0x02, 0x7F}, /* L M */
    {0x7F, 0x04, 0x08, 0x10, 0x7F}, {0x3E, 0x41, 0x41, 0x41, 0x3E}, /* N O */
    {0x7F, 0x09, 0x09, 0x09, 0x06}, {0x3E, 0x41, 0x51, 0x21, 0x5E}, /* P Q */
    {0x7F, 0x09, 0x19, 0x29, 0x46}, {0x46, 0x49, 0x49, 0x49, 0x31}, /* R S */
    {0x01, 0x01, 0x7F, 0x01, 0x01}, {0x3F, 0x40, 0x40, 0x40, 0x3F}, /* T U */
    {0x1F, 0x20, 0x40, 0x20, 0x1F}, {0x3F, 0x40, 0x38, 0x40, 0x3F}, /* V W */
    {0x63, 0x14, 0x08, 0x14, 0x63}, {0x07, 0x08, 0x70, 0x08, 0x07}, /* X Y */
    {0x61, 0x51, 0x49, 0x45, 0x43}, {0x00, 0x7F, 0x41, 0x41, 0x00}, /* Z [ */
    {0x02, 0x04, 0x08, 0x10, 0x20}, {0x00, 0x41, 0x41, 0x7F, 0x00}, /* \ ] */
    {0x04, 0x02, 0x01, 0x02, 0x04}, {0x40, 0x40, 0x40, 0x40, 0x40}, /* ^ _ */
    {0x00, 0x01, 0x02, 0x04, 0x00}, {0x20, 0x54, 0x54, 0x54, 0x78}, /* ` a */
    {0x7F, 0x48, 0x44, 0x44, 0x38}, {0x38, 0x44, 0x44, 0x44, 0x20}, /* b c */
    {0x38, 0x44, 0x44, 0x48, 0x7F}, {0x38, 0x54, 0x54, 0x54, 0x18}, /* d e */
    {0x08, 0x7E, 0x09, 0x01, 0x02}, {0x08, 0x54, 0x54, 0x54, 0x3C}, /* f g */
    {0x7F, 0x08, 0x04, 0x04, 0x78}, {0x00, 0x44, 0x7D, 0x40, 0x00}, /* h i */
    {0x20, 0x40, 0x44, 0x3D, 0x00}, {0x7F, 0x10, 0x28, 0x44, 0x00}, /* j k */
    {0x00, 0x41, 0x7F, 0x40, 0x00}, {0x7C, 0x04, 0x18, 0x04, 0x78}, /* l m */
    {0x7C, 0x08, 0x04, 0x04, 0x78}, {0x38, 0x44, 0x44, 0x44, 0x38}, /* n o */
    {0x7C, 0x14, 0x14, 0x14, 0x08}, {0x08, 0x14, 0x14, 0x18, 0x7C}, /* p q */
    {0x7C, 0x08, 0x04, 0x04, 0x08}, {0x48, 0x54, 0x54, 0x54, 0x20}, /* r s */
    {0x04, 0x3F, 0x44, 0x40, 0x20}, {0x3C, 0x40, 0x40, 0x20, 0x7C}, /* t u */
    {0x1C, 0x20, 0x40, 0x20, 0x1C}, {0x3C, 0x40, 0x30, 0x40, 0x3C}, /* v w */
    {0x44, 0x28, 0x10, 0x28, 0x44}, {0x0C, 0x50, 0x50, 0x50, 0x3C}, /* x y */
    {0x44, 0x64, 0x54, 0x4C, 0x44}, {0x00, 0x08, 0x36, 0x41, 0x00}, /* z { */
    {0x00, 0x00, 0x7F, 0x00, 0x00}, {0x00, 0x41, 0x36, 0x08, 0x00}, /* | } */
    {0x08, 0x04, 0x08, 0x10, 0x08}, {0x60, 0x40, 0x40, 0x40, 0x60}, /* ~ ␣ */
};

/* ---- colours ----------------------------------------------------------------- */
static const uint8_t BACKGROUND[3] = {255, 255, 255};
static const uint8_t GRID[3] = {255, 255, 255}; /* white gaps between cells */
static const uint8_t INK[3] = {0, 0, 0};
static const uint8_t HEX_INK[3] = {90, 90, 170}; /* escaped bytes: not mistaken for text */
static const uint8_t NAN_GREY[3] = {150, 150, 150};

/* matplotlib's viridis at t = 0, 1/9, ..., 1; linear between the stops. Its lightness
 * rises monotonically, so the order of weights survives greyscale and colour blindness. */
static const uint8_t viridis[10][3] = {
    {0x44, 0x01, 0x54}, {0x48, 0x28, 0x78}, {0x3e, 0x49, 0x89}, {0x31, 0x68, 0x8e},
    {0x26, 0x82, 0x8e}, {0x1f, 0x9e, 0x89}, {0x35, 0xb7, 0x79}, {0x6e, 0xce, 0x58},
    {0xb5, 0xde, 0x2b}, {0xfd, 0xe7, 0x25},
};

void heatmap_colour(float v, uint8_t rgb[3]) {
    if (isnan(v)) {
        memcpy(rgb, NAN_GREY, 3);
        return;
    }
    float t = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v; /* ±inf clamp too */
    float x = t * 9.0f;
    int k = (int)x;
    if (k > 8) k = 8;
    float f = x - (float)k;
    for (int c = 0; c < 3; c++)
        rgb[c] = (uint8_t)lrintf((1.0f - f) * viridis[k][c] + f * viridis[k + 1][c]);
}

/* ---- layout -------------------------------------------------------------------- */
tfm_status heatmap_layout_of(int64_t rows, int64_t cols, int64_t title_len, heatmap_layout *out) {
    if (rows <= 0 || cols <= 0 || title_len < 0)
        return tfm_error(TFM_ERR_INVALID_ARG,
                         "heatmap: rows (%lld) and cols (%lld) must be positive",
                         (long long)rows, (long long)cols);
    heatmap_layout L = {0};
    L.title_y = MARGIN;
    L.grid_x = MARGIN + HEATMAP_CELL + LABEL_GAP;
    L.grid_y = MARGIN + (title_len ? TITLE_H + TITLE_GAP : 0) + HEATMAP_CELL + LABEL_GAP;
    /* Grid plus its closing grid line plus the margin must fit; checked before
     * multiplying so that no product can overflow. */
    int64_t max_cols = (HEATMAP_MAX_PX - L.grid_x - 1 - MARGIN) / HEATMAP_CELL;
    int64_t max_rows = (HEATMAP_MAX_PX - L.grid_y - 1 - MARGIN) / HEATMAP_CELL;
    if (rows > max_rows || cols > max_cols)
        return tfm_error(TFM_ERR_INVALID_ARG,
                         "heatmap: %lld x %lld cells exceed the %d-pixel limit (at most %lld x "
                         "%lld)",
                         (long long)rows, (long long)cols, HEATMAP_MAX_PX, (long long)max_rows,
                         (long long)max_cols);
    L.width = L.grid_x + cols * HEATMAP_CELL + 1 + MARGIN;
    L.height = L.grid_y + rows * HEATMAP_CELL + 1 + MARGIN;
    int64_t max_chars = (HEATMAP_MAX_PX - 2 * MARGIN + SCALE) / ADVANCE;
    L.title_chars = title_len < max_chars ? title_len : max_chars;
    if (L.title_chars) {
        int64_t w = 2 * MARGIN + L.title_chars * ADVANCE - SCALE;
        if (w > L.width) L.width = w;
    }
    *out = L;
    return TFM_OK;
}

/* ---- rendering one pixel row ---------------------------------------------------- */
typedef struct heatmap_src {
    const float *w; /* (rows, cols) */
    int64_t rows, cols;
    const uint8_t *row_labels, *col_labels;
    const char *title;
} heatmap_src;

static void put(uint8_t *row /* (width, 3) */, int64_t width, int64_t x, const uint8_t c[3]) {
    if (x >= 0 && x < width) memcpy(row + 3 * x, c, 3);
}

/* Row gy (0..GLYPH_H-1) of glyph g (32..127) at x, each font pixel scale × scale. */
static void glyph_row(uint8_t *row, int64_t width, int64_t x, int gy, int scale, unsigned g,
                      const uint8_t ink[3]) {
    for (int c = 0; c < GLYPH_W; c++)
        if (font[g - 32][c] >> gy & 1)
            for (int s = 0; s < scale; s++) put(row, width, x + c * scale + s, ink);
}

/* Row dy (0..CELL-1) of a label box at x: a printable byte as one large glyph, a space as
 * '␣', anything else as two small hex digits. */
static void label_row(uint8_t *row, int64_t width, int64_t x, int64_t dy, uint8_t b) {
    if (b >= 32 && b < 127) {
        int64_t top = (HEATMAP_CELL - GLYPH_H * SCALE) / 2;
        if (dy >= top && dy < top + GLYPH_H * SCALE)
            glyph_row(row, width, x + (HEATMAP_CELL - GLYPH_W * SCALE + 1) / 2,
                      (int)((dy - top) / SCALE), SCALE, b == ' ' ? GLYPH_SPACE_MARK : b, INK);
        return;
    }
    static const char hex[] = "0123456789ABCDEF";
    int64_t top = (HEATMAP_CELL - GLYPH_H) / 2;
    if (dy < top || dy >= top + GLYPH_H) return;
    int64_t x0 = x + (HEATMAP_CELL - (2 * GLYPH_W + 1) + 1) / 2;
    glyph_row(row, width, x0, (int)(dy - top), 1, (unsigned char)hex[b >> 4], HEX_INK);
    glyph_row(row, width, x0 + GLYPH_W + 1, (int)(dy - top), 1, (unsigned char)hex[b & 15],
              HEX_INK);
}

static void render_row(const heatmap_src *src, const heatmap_layout *L, int64_t y,
                       uint8_t *row /* (width, 3) */) {
    int64_t width = L->width;
    for (int64_t x = 0; x < width; x++) memcpy(row + 3 * x, BACKGROUND, 3);

    /* title */
    if (y >= L->title_y && y < L->title_y + GLYPH_H * SCALE) {
        int gy = (int)((y - L->title_y) / SCALE);
        for (int64_t k = 0; k < L->title_chars; k++) {
            unsigned char ch = (unsigned char)src->title[k];
            glyph_row(row, width, MARGIN + k * ADVANCE, gy, SCALE,
                      ch >= 32 && ch < 127 ? ch : '.', INK);
        }
    }
    /* column labels, one box above each column */
    int64_t label_y = L->grid_y - LABEL_GAP - HEATMAP_CELL;
    if (y >= label_y && y < label_y + HEATMAP_CELL)
        for (int64_t j = 0; j < src->cols; j++)
            label_row(row, width, L->grid_x + j * HEATMAP_CELL, y - label_y, src->col_labels[j]);

    /* grid rows: a row label, then cells separated by grid lines */
    int64_t dy = y - L->grid_y;
    if (dy < 0 || dy > src->rows * HEATMAP_CELL) return;
    int64_t i = dy / HEATMAP_CELL, in = dy % HEATMAP_CELL;
    int64_t x_end = L->grid_x + src->cols * HEATMAP_CELL; /* the closing grid line */
    if (in == 0) {
        for (int64_t x = L->grid_x; x <= x_end; x++) put(row, width, x, GRID);
        return;
    }
    label_row(row, width, MARGIN, in, src->row_labels[i]);
    for (int64_t j = 0; j < src->cols; j++) {
        uint8_t c[3];
        heatmap_colour(src->w[i * src->cols + j], c);
        int64_t x0 = L->grid_x + j * HEATMAP_CELL;
        put(row, width, x0, GRID);
        for (int64_t x = x0 + 1; x < x0 + HEATMAP_CELL; x++) memcpy(row + 3 * x, c, 3);
    }
    put(row, width, x_end, GRID);
}

/* ---- PNG encoding --------------------------------------------------------------- */
/* libpng reports through these callbacks; the error callback must not return. */
typedef struct png_sink {
    int fd;
    char msg[200];
} png_sink;


static void on_png_error(png_structp png, png_const_charp msg) {
    png_sink *sink = png_get_error_ptr(png);
    snprintf(sink->msg, sizeof sink->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg) {
    (void)png, (void)msg; /* the library never prints */
}

static void on_png_write(png_structp png, png_bytep data, size_t n) {
    png_sink *sink = png_get_io_ptr(png);
    if (!write_all(sink->fd, data, n)) png_error(png, strerror(errno));
}

static void on_png_flush(png_structp png) { (void)png; }

/* The whole PNG to sink->fd. `sink` lives in the caller so that nothing this function
 * modifies between setjmp and longjmp is read afterwards (C11 7.13.2.1). */
static tfm_status encode_png(png_sink *sink, const heatmap_src *src, const heatmap_layout *L,
                             uint8_t *row /* (width, 3) */) {
    png_structp png =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, sink, on_png_error, on_png_warning);
    if (!png) return tfm_error(TFM_ERR_NOMEM, "heatmap: cannot create the PNG writer");
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return tfm_error(TFM_ERR_NOMEM, "heatmap: cannot create the PNG writer");
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return tfm_error(TFM_ERR_IO, "libpng: %s", sink->msg);
    }
    png_set_write_fn(png, sink, on_png_write, on_png_flush);
    png_set_IHDR(png, info, (png_uint_32)L->width, (png_uint_32)L->height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int64_t y = 0; y < L->height; y++) {
        render_row(src, L, y, row);
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return TFM_OK;
}


tfm_status heatmap_write_png(const char *path, const float *w, int64_t rows, int64_t cols,
                             const uint8_t *row_labels, const uint8_t *col_labels,
                             const char *title) {
    if (!path || !w || !row_labels || !col_labels || !title)
        return tfm_error(TFM_ERR_INVALID_ARG, "heatmap_write_png: NULL argument");
    if (!*path) return tfm_error(TFM_ERR_INVALID_ARG, "heatmap_write_png: empty path");
    /* strnlen: the title is clipped to the image, so no need to walk further. */
    size_t title_len = strnlen(title, HEATMAP_MAX_PX);
    heatmap_layout L;
    tfm_status s = heatmap_layout_of(rows, cols, (int64_t)title_len, &L);
    if (s != TFM_OK) return s;

    const heatmap_src src = {w, rows, cols, row_labels, col_labels, title};
    size_t tlen = strlen(path) + 32;
    uint8_t *row = malloc((size_t)L.width * 3);
    char *tmp = malloc(tlen);
    if (!row || !tmp) {
        free(row);
        free(tmp);
        return tfm_error(TFM_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());

    png_sink sink = {.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666)};
    if (sink.fd < 0) {
        s = tfm_error(TFM_ERR_IO, "%s: cannot create temporary file '%s': %s", path, tmp,
                      strerror(errno));
        goto done;
    }
    s = encode_png(&sink, &src, &L, row);
    const char *what = NULL; /* the step that failed after a successful encoding */
    int err = 0;
    if (s == TFM_OK && fsync(sink.fd) != 0) what = "fsync", err = errno;
    if (close(sink.fd) != 0 && s == TFM_OK && !what) what = "close", err = errno;
    if (s == TFM_OK && !what && rename(tmp, path) != 0) what = "rename", err = errno;
    if (s != TFM_OK || what) {
        unlink(tmp);
        if (s == TFM_OK)
            s = tfm_error(TFM_ERR_IO, "%s: cannot %s temporary file '%s': %s", path, what, tmp,
                          strerror(err));
        else
            s = tfm_error_context(s, "%s", path);
        goto done;
    }
    int e = fsync_parent(path);
    if (e)
        s = tfm_error(TFM_ERR_IO,
                      "%s: written, but fsync of its directory failed (%s): it may not survive a "
                      "crash",
                      path, strerror(e));
done:
    free(row);
    free(tmp);
    return s;
}
