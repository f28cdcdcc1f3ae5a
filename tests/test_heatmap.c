/* test_heatmap.c — heat-map PNGs read back with libpng: size, 8-bit RGB, the hot cells of
 * an anti-diagonal where they belong, a colour ramp that brightens with the weight, NaN
 * grey, labels drawn; bad arguments rejected; I/O failures (libpng's included) reported
 * as TFM_ERR_IO with no temporary file left behind. */
#include <setjmp.h> /* cmocka needs these before it */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <png.h>

#include "io/heatmap.h"
#include "support/check.h"

/* An image read back as 8-bit RGB. */
typedef struct image {
    int64_t width, height;
    uint8_t *px; /* (height, width, 3) */
} image;

static image read_png(const char *path) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path)) fail_msg("%s: %s", path, img.message);
    /* The file itself must be 8-bit RGB: no alpha, no palette, not 16-bit. */
    assert_int_equal(img.format, PNG_FORMAT_RGB);
    image out = {img.width, img.height, malloc(PNG_IMAGE_SIZE(img))};
    assert_non_null(out.px);
    if (!png_image_finish_read(&img, NULL, out.px, 0, NULL)) fail_msg("%s: %s", path, img.message);
    return out;
}

static const uint8_t *pixel(const image *im, int64_t x, int64_t y) {
    assert_true(x >= 0 && x < im->width && y >= 0 && y < im->height);
    return im->px + 3 * (y * im->width + x);
}

/* The colour of cell (i, j), after checking that all its inner pixels share it. */
static void cell_colour(const image *im, const heatmap_layout *L, int64_t i, int64_t j,
                        uint8_t rgb[3]) {
    int64_t x0 = L->grid_x + j * HEATMAP_CELL, y0 = L->grid_y + i * HEATMAP_CELL;
    memcpy(rgb, pixel(im, x0 + 1, y0 + 1), 3);
    for (int64_t y = y0 + 1; y < y0 + HEATMAP_CELL; y++)
        for (int64_t x = x0 + 1; x < x0 + HEATMAP_CELL; x++)
            if (memcmp(pixel(im, x, y), rgb, 3) != 0)
                fail_msg("cell (%lld, %lld) is not uniform at (%lld, %lld)", (long long)i,
                         (long long)j, (long long)x, (long long)y);
}

/* Pixels that are not white in the w × h box at (x0, y0). */
static int ink_in_box(const image *im, int64_t x0, int64_t y0, int64_t w, int64_t h) {
    int n = 0;
    for (int64_t y = y0; y < y0 + h; y++)
        for (int64_t x = x0; x < x0 + w; x++) {
            const uint8_t *p = pixel(im, x, y);
            n += !(p[0] == 255 && p[1] == 255 && p[2] == 255);
        }
    return n;
}

static bool boxes_equal(const image *im, int64_t xa, int64_t ya, int64_t xb, int64_t yb, int64_t w,
                        int64_t h) {
    for (int64_t y = 0; y < h; y++)
        if (memcmp(pixel(im, xa, ya + y), pixel(im, xb, yb + y), 3 * (size_t)w) != 0) return false;
    return true;
}

static double luminance(const uint8_t c[3]) {
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
}

/* Directory entries whose name contains `part`. */
static int count_entries(const char *dir, const char *part) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, part) != NULL;
    closedir(d);
    return n;
}

static void test_anti_diagonal(void **state) {
    (void)state;
    enum { R = 5, C = 8 };
    float w[R * C] = {0};
    for (int i = 0; i < R; i++) w[i * C + (C - 1 - i)] = 1.0f;
    const uint8_t rows[R] = {'A', 'b', ' ', '\n', 0xC3};
    const uint8_t cols[C] = {'h', 'e', 'l', 'l', 'o', '!', '~', '{'};
    char path[600];
    tmp_path(path, sizeof path, "anti.png");
    assert_int_equal(heatmap_write_png(path, w, R, C, rows, cols, "anti-diagonal"), TFM_OK);

    heatmap_layout L;
    assert_int_equal(heatmap_layout_of(R, C, 13, &L), TFM_OK);
    image im = read_png(path);
    assert_int_equal(im.width, L.width);
    assert_int_equal(im.height, L.height);
    /* The grid and the title fit: independent of the layout's own arithmetic. */
    assert_true(im.width >= L.grid_x + C * HEATMAP_CELL + 1 && L.grid_x > 0);
    assert_true(im.height >= L.grid_y + R * HEATMAP_CELL + 1 && L.grid_y > HEATMAP_CELL);
    assert_true(im.width >= 13 * 10);

    uint8_t hot[3], cold[3], c[3];
    cell_colour(&im, &L, 0, C - 1, hot);
    cell_colour(&im, &L, 0, 0, cold);
    /* viridis: 1 is yellow, 0 dark purple */
    assert_true(hot[0] > 200 && hot[1] > 200 && hot[2] < 80);
    assert_true(cold[0] < 100 && cold[1] < 30 && cold[2] > 60 && cold[2] < 120);
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) {
            cell_colour(&im, &L, i, j, c);
            const uint8_t *want = j == C - 1 - i ? hot : cold;
            if (memcmp(c, want, 3) != 0)
                fail_msg("cell (%d, %d): got %d,%d,%d, want %d,%d,%d", i, j, c[0], c[1], c[2],
                         want[0], want[1], want[2]);
        }
    /* Grid lines between cells are neither colour. */
    const uint8_t *g = pixel(&im, L.grid_x + HEATMAP_CELL, L.grid_y + 5);
    assert_true(memcmp(g, hot, 3) != 0 && memcmp(g, cold, 3) != 0);
    g = pixel(&im, L.grid_x + 5, L.grid_y + HEATMAP_CELL);
    assert_true(memcmp(g, hot, 3) != 0 && memcmp(g, cold, 3) != 0);

    /* Every label box holds ink; equal labels look equal, different ones differ. */
    int64_t ly = L.grid_y - 2 - HEATMAP_CELL; /* column labels sit 2 px above the grid */
    for (int j = 0; j < C; j++)
        assert_true(
            ink_in_box(&im, L.grid_x + j * HEATMAP_CELL, ly, HEATMAP_CELL, HEATMAP_CELL) > 4);
    for (int i = 0; i < R; i++)
        assert_true(ink_in_box(&im, 8, L.grid_y + i * HEATMAP_CELL + 1, HEATMAP_CELL,
                               HEATMAP_CELL - 1) > 4);
    int64_t xl = L.grid_x + 2 * HEATMAP_CELL, xl2 = L.grid_x + 3 * HEATMAP_CELL;
    int64_t xh = L.grid_x + 0 * HEATMAP_CELL, xe = L.grid_x + 1 * HEATMAP_CELL;
    assert_true(boxes_equal(&im, xl, ly, xl2, ly, HEATMAP_CELL, HEATMAP_CELL));  /* l, l */
    assert_false(boxes_equal(&im, xh, ly, xe, ly, HEATMAP_CELL, HEATMAP_CELL)); /* h, e */
    /* The title line holds ink. */
    assert_true(ink_in_box(&im, 0, L.title_y, im.width, 14) > 20);
    free(im.px);
}

static void test_ramp_and_clamp(void **state) {
    (void)state;
    enum { C = 14 };
    float w[C];
    for (int j = 0; j < 10; j++) w[j] = (float)j / 9.0f;
    w[10] = -0.5f, w[11] = 7.0f, w[12] = -INFINITY, w[13] = INFINITY;
    uint8_t labels[C];
    for (int j = 0; j < C; j++) labels[j] = (uint8_t)('a' + j);
    char path[600];
    tmp_path(path, sizeof path, "ramp.png");
    assert_int_equal(heatmap_write_png(path, w, 1, C, labels, labels, ""), TFM_OK);
    heatmap_layout L;
    assert_int_equal(heatmap_layout_of(1, C, 0, &L), TFM_OK);
    image im = read_png(path);
    assert_int_equal(im.width, L.width);
    assert_int_equal(im.height, L.height);
    uint8_t c[C][3];
    for (int j = 0; j < C; j++) cell_colour(&im, &L, 0, j, c[j]);
    /* Perceptually ordered: lightness rises strictly with the weight. */
    for (int j = 1; j < 10; j++)
        if (!(luminance(c[j]) > luminance(c[j - 1]) + 5.0))
            fail_msg("luminance of %g (%.1f) not above that of %g (%.1f)", w[j], luminance(c[j]),
                     w[j - 1], luminance(c[j - 1]));
    assert_memory_equal(c[10], c[0], 3);  /* -0.5 → 0 */
    assert_memory_equal(c[11], c[9], 3);  /* 7 → 1 */
    assert_memory_equal(c[12], c[0], 3);  /* -inf → 0 */
    assert_memory_equal(c[13], c[9], 3);  /* inf → 1 */
    free(im.px);
}

static void test_nan_grey(void **state) {
    (void)state;
    const float w[4] = {0.0f, NAN, 1.0f, 0.5f};
    const uint8_t rl[2] = {'x', 'y'}, cl[2] = {'p', 'q'};
    char path[600];
    tmp_path(path, sizeof path, "nan.png");
    assert_int_equal(heatmap_write_png(path, w, 2, 2, rl, cl, "NaN"), TFM_OK);
    heatmap_layout L;
    assert_int_equal(heatmap_layout_of(2, 2, 3, &L), TFM_OK);
    image im = read_png(path);
    uint8_t nan[3], c[3];
    cell_colour(&im, &L, 0, 1, nan);
    assert_true(nan[0] == nan[1] && nan[1] == nan[2]);     /* grey */
    assert_true(nan[0] > 60 && nan[0] < 220);              /* neither black nor white */
    for (int k = 0; k < 4; k++) {
        if (k == 1) continue;
        cell_colour(&im, &L, k / 2, k % 2, c);
        assert_false(c[0] == c[1] && c[1] == c[2]); /* weights are never grey */
    }
    free(im.px);
}

static void test_bad_args(void **state) {
    (void)state;
    const float w[4] = {0};
    const uint8_t lab[4] = {'a', 'b', 'c', 'd'};
    char path[600];
    tmp_path(path, sizeof path, "bad.png");
    assert_int_equal(heatmap_write_png(NULL, w, 2, 2, lab, lab, "t"), TFM_ERR_INVALID_ARG);
    assert_int_equal(heatmap_write_png("", w, 2, 2, lab, lab, "t"), TFM_ERR_INVALID_ARG);
    assert_int_equal(heatmap_write_png(path, NULL, 2, 2, lab, lab, "t"), TFM_ERR_INVALID_ARG);
    assert_int_equal(heatmap_write_png(path, w, 2, 2, NULL, lab, "t"), TFM_ERR_INVALID_ARG);
    assert_int_equal(heatmap_write_png(path, w, 2, 2, lab, NULL, "t"), TFM_ERR_INVALID_ARG);
    assert_int_equal(heatmap_write_png(path, w, 2, 2, lab, lab, NULL), TFM_ERR_INVALID_ARG);
    assert_int_equal(heatmap_write_png(path, w, 0, 2, lab, lab, "t"), TFM_ERR_INVALID_ARG);
    assert_int_equal(heatmap_write_png(path, w, 2, -1, lab, lab, "t"), TFM_ERR_INVALID_ARG);
    /* Too large: checked before any product is formed, so INT64_MAX cannot overflow. */
    assert_int_equal(heatmap_write_png(path, w, INT64_MAX, 2, lab, lab, "t"), TFM_ERR_INVALID_ARG);
    assert_int_equal(heatmap_write_png(path, w, 2, INT64_MAX / 3, lab, lab, "t"),
                     TFM_ERR_INVALID_ARG);
    assert_int_equal(heatmap_write_png(path, w, 2, HEATMAP_MAX_PX / HEATMAP_CELL, lab, lab, "t"),
                     TFM_ERR_INVALID_ARG);
    assert_non_null(strstr(tfm_last_error(), "limit"));
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0); /* nothing written */

    /* The largest grid allowed stays within the limit; a long title is clipped. */
    heatmap_layout L;
    int64_t n = 1;
    while (heatmap_layout_of(n + 1, n + 1, 1000000, &L) == TFM_OK) n++;
    assert_int_equal(heatmap_layout_of(n, n, 1000000, &L), TFM_OK);
    assert_true(L.width <= HEATMAP_MAX_PX && L.height <= HEATMAP_MAX_PX);
    assert_true(n * HEATMAP_CELL > HEATMAP_MAX_PX - 80); /* and is not needlessly small */
    assert_int_equal(heatmap_layout_of(1, 1, 1000000, &L), TFM_OK);
    assert_true(L.width <= HEATMAP_MAX_PX && L.title_chars < 1000000);
}

static void test_unwritable_path(void **state) {
    (void)state;
    const float w[1] = {0.5f};
    const uint8_t lab[1] = {'a'};
    char dir[600], path[700];
    tmp_path(dir, sizeof dir, "");
    /* A directory that does not exist: the temporary file cannot be created. */
    snprintf(path, sizeof path, "%sno/such/dir/x.png", dir);
    assert_int_equal(heatmap_write_png(path, w, 1, 1, lab, lab, "t"), TFM_ERR_IO);
    assert_non_null(strstr(tfm_last_error(), "no/such/dir"));
    /* A directory in the way: written, then the rename fails; the temp file must go. */
    snprintf(path, sizeof path, "%sa_directory", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(heatmap_write_png(path, w, 1, 1, lab, lab, "t"), TFM_ERR_IO);
    assert_non_null(strstr(tfm_last_error(), "rename"));
    assert_int_equal(count_entries(dir, ".tmp."), 0);
    rmdir(path);
}

/* A write that fails inside libpng (file size limit → EFBIG) comes back through
 * setjmp as TFM_ERR_IO, the process alive and no temporary file left. */
static void test_libpng_write_error(void **state) {
    (void)state;
    enum { R = 64, C = 64 };
    float *w = malloc(sizeof(float) * R * C);
    uint8_t lab[C];
    assert_non_null(w);
    for (int k = 0; k < R * C; k++) w[k] = (float)((k * 7919) % 101) / 100.0f; /* varied */
    for (int j = 0; j < C; j++) lab[j] = (uint8_t)(33 + j);
    char dir[600], path[700];
    tmp_path(dir, sizeof dir, "");
    snprintf(path, sizeof path, "%sbig.png", dir);

    /* stderr goes to a file meanwhile: the library must not print (libpng's default
     * handlers would). */
    char err_path[700];
    snprintf(err_path, sizeof err_path, "%sstderr.txt", dir);
    fflush(stderr);
    int saved_stderr = dup(2);
    FILE *err_file = fopen(err_path, "w+");
    assert_true(saved_stderr >= 0 && err_file);
    dup2(fileno(err_file), 2);
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = {1000, old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    tfm_status s = heatmap_write_png(path, w, R, C, lab, lab, "too big");
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    struct stat est;
    assert_int_equal(fstat(fileno(err_file), &est), 0);
    fclose(err_file);
    assert_int_equal(est.st_size, 0);

    assert_int_equal(s, TFM_ERR_IO);
    assert_non_null(strstr(tfm_last_error(), "libpng"));
    assert_non_null(strstr(tfm_last_error(), "big.png"));
    assert_int_equal(count_entries(dir, ".tmp."), 0);
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0);
    /* Without the limit the same call succeeds. */
    assert_int_equal(heatmap_write_png(path, w, R, C, lab, lab, "too big"), TFM_OK);
    image im = read_png(path);
    free(im.px);
    free(w);
}

static void test_replaces_existing(void **state) {
    (void)state;
    const float a[1] = {0.0f}, b[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    const uint8_t lab[2] = {'a', 'b'};
    char path[600];
    tmp_path(path, sizeof path, "again.png");
    assert_int_equal(heatmap_write_png(path, a, 1, 1, lab, lab, "one"), TFM_OK);
    assert_int_equal(heatmap_write_png(path, b, 2, 2, lab, lab, "two"), TFM_OK);
    heatmap_layout L;
    assert_int_equal(heatmap_layout_of(2, 2, 3, &L), TFM_OK);
    image im = read_png(path);
    assert_int_equal(im.width, L.width);
    assert_int_equal(im.height, L.height);
    free(im.px);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_anti_diagonal),   cmocka_unit_test(test_ramp_and_clamp),
        cmocka_unit_test(test_nan_grey),        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_unwritable_path), cmocka_unit_test(test_libpng_write_error),
        cmocka_unit_test(test_replaces_existing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
