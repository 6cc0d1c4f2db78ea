/*
 * The .npy reader and writer, tested directly: every dtype in every format
 * version, the header variations NumPy and others write, every malformed
 * case with its message, random garbage (which must never crash or hang),
 * and the atomic writer's promises.
 */
#define _POSIX_C_SOURCE 200809L

#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "npy.h"
#include "util.h"

static void setup(void) {
    cr_assert_not_null(tu_make_temp_dir(), "cannot make a temp dir");
}
static void teardown(void) {
    tu_remove_temp_dir();
}

TestSuite(npy, .init = setup, .fini = teardown);

/* Builds a .npy file in buf: the given format version, header dict text
 * padded (spaces, then '\n') so the data starts at a multiple of align, then
 * data_len bytes of data. Returns the file's length. */
static size_t make_npy(unsigned char *buf, size_t cap, int major, const char *dict, size_t align,
                       const void *data, size_t data_len) {
    size_t prefix = major == 1 ? 10 : 12;
    size_t total = prefix + strlen(dict) + 1;
    size_t padded = (total + align - 1) / align * align;
    size_t header_len = padded - prefix;
    cr_assert(padded + data_len <= cap);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    buf[8] = (unsigned char)(header_len & 0xff);
    buf[9] = (unsigned char)((header_len >> 8) & 0xff);
    if (major != 1) {
        buf[10] = (unsigned char)((header_len >> 16) & 0xff);
        buf[11] = (unsigned char)((header_len >> 24) & 0xff);
    }
    memcpy(buf + prefix, dict, strlen(dict));
    memset(buf + prefix + strlen(dict), ' ', padded - prefix - strlen(dict) - 1);
    buf[padded - 1] = '\n';
    if (data_len > 0) memcpy(buf + padded, data, data_len);
    return padded + data_len;
}

static const struct {
    const char *descr;
    ta_npy_dtype dtype;
    size_t size;
} dtypes[] = {
    {"<f4", TA_NPY_F32, 4}, {"<f2", TA_NPY_F16, 2}, {"<f8", TA_NPY_F64, 8}, {"|b1", TA_NPY_BOOL, 1},
    {"|u1", TA_NPY_U8, 1},  {"<i4", TA_NPY_I32, 4}, {"<i8", TA_NPY_I64, 8},
};

Test(npy, reads_every_dtype_in_every_version) {
    unsigned char data[6 * 8];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 37 + 1);
    static unsigned char file[4096];
    for (int major = 1; major <= 3; major++) {
        for (size_t t = 0; t < sizeof dtypes / sizeof dtypes[0]; t++) {
            char dict[128];
            snprintf(dict, sizeof dict,
                     "{'descr': '%s', 'fortran_order': False, 'shape': (2, 3), }", dtypes[t].descr);
            size_t data_len = 6 * dtypes[t].size;
            size_t len = make_npy(file, sizeof file, major, dict, 64, data, data_len);
            const char *path = tu_path("a.npy");
            cr_assert_eq(tu_write_file(path, file, len), 0);

            ta_npy_array a;
            char err[TA_NPY_ERR_LEN] = "";
            cr_assert_eq(ta_npy_read(path, &a, err, sizeof err), 0, "v%d %s: %s", major,
                         dtypes[t].descr, err);
            cr_assert_eq(a.dtype, dtypes[t].dtype);
            cr_assert_eq(a.ndim, 2);
            cr_assert_eq(a.shape[0], 2);
            cr_assert_eq(a.shape[1], 3);
            cr_assert_eq(a.count, 6);
            cr_assert_eq(a.nbytes, data_len);
            cr_assert_eq((uintptr_t)a.data % TA_NPY_ALIGNMENT, 0);
            cr_assert_eq(memcmp(a.data, data, data_len), 0);
            ta_npy_free(&a);
            cr_assert_null(a.data);

            /* The same bytes from memory. */
            cr_assert_eq(ta_npy_parse(file, len, "mem", &a, err, sizeof err), 0, "%s", err);
            cr_assert_eq(memcmp(a.data, data, data_len), 0);
            ta_npy_free(&a);
        }
    }
}

Test(npy, accepts_header_variations) {
    static const char *const dicts[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
        "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}",
        "{ \"descr\" : \"<f4\" , \"fortran_order\" : False , \"shape\" : ( 2 , 3 , ) }",
        "{'descr':'<f4','fortran_order':False,'shape':(2L, 3L)}",
        "{'descr': '<f4',\n 'fortran_order': False,\n 'shape': (2,\t3)}",
        /* Fortran order is the same layout when one dimension is 1. */
        "{'descr': '<f4', 'fortran_order': True, 'shape': (6, 1)}",
    };
    float data[6] = {1, 2, 3, 4, 5, 6};
    static unsigned char file[4096];
    for (size_t i = 0; i < sizeof dicts / sizeof dicts[0]; i++) {
        /* Old NumPy aligned the data to 16 bytes only. */
        for (size_t align = 16; align <= 64; align *= 4) {
            size_t len = make_npy(file, sizeof file, 1, dicts[i], align, data, sizeof data);
            ta_npy_array a;
            char err[TA_NPY_ERR_LEN] = "";
            cr_assert_eq(ta_npy_parse(file, len, "mem", &a, err, sizeof err), 0, "%s: %s", dicts[i],
                         err);
            cr_assert_eq(a.count, 6);
            cr_assert_eq((uintptr_t)a.data % TA_NPY_ALIGNMENT, 0);
            cr_assert_eq(memcmp(a.data, data, sizeof data), 0);
            ta_npy_free(&a);
        }
    }
}

Test(npy, reads_scalars_vectors_and_empty_arrays) {
    static unsigned char file[4096];
    float one = 7.0f;
    struct {
        const char *shape;
        int ndim;
        size_t count;
    } cases[] = {{"()", 0, 1},
                 {"(1,)", 1, 1},
                 {"(0,)", 1, 0},
                 {"(0, 5)", 2, 0},
                 {"(1, 1, 1, 1, 1, 1, 1, 1)", 8, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dict[128];
        snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }",
                 cases[i].shape);
        size_t len = make_npy(file, sizeof file, 1, dict, 64, &one, 4 * cases[i].count);
        const char *path = tu_path("s.npy");
        cr_assert_eq(tu_write_file(path, file, len), 0);
        ta_npy_array a;
        char err[TA_NPY_ERR_LEN] = "";
        cr_assert_eq(ta_npy_read(path, &a, err, sizeof err), 0, "%s: %s", cases[i].shape, err);
        cr_assert_eq(a.ndim, cases[i].ndim);
        cr_assert_eq(a.count, cases[i].count);
        cr_assert_not_null(a.data);
        if (a.count == 1) cr_assert_eq(((float *)a.data)[0], 7.0f);
        ta_npy_free(&a);
    }
}

/* One malformed file and a piece of the message it must give. */
typedef struct bad_case {
    const char *what;
    const char *dict; /* NULL: raw bytes below */
    size_t data_len;  /* bytes of data after the header */
    const char *raw;  /* raw file content when dict is NULL */
    size_t raw_len;
    const char *expect; /* a piece of the message */
} bad_case;

#define DICT(descr, fortran, shape)                                                                \
    "{'descr': '" descr "', 'fortran_order': " fortran ", 'shape': " shape ", }"

static const bad_case bad_cases[] = {
    {"empty file", NULL, 0, "", 0, "empty file"},
    {"garbage magic", NULL, 0, "hello, world: not numpy at all", 30, "bad magic"},
    {"cut magic", NULL, 0, "\x93NUM", 4, "truncated header"},
    {"cut preamble", NULL, 0, "\x93NUMPY\x01\x00\x76", 9, "truncated header"},
    {"header beyond file", NULL, 0, "\x93NUMPY\x01\x00\x60\xea{}\n", 13, "beyond the end"},
    {"header over limit", NULL, 0, "\x93NUMPY\x02\x00\x00\x00\x00\x80{}\n", 15, "limit"},
    {"version 4.0", NULL, 0, "\x93NUMPY\x04\x00\x02\x00{}", 12, "version 4.0"},
    {"version 1.1", NULL, 0, "\x93NUMPY\x01\x01\x02\x00{}", 12, "version 1.1"},
    {"not a dict", "[1, 2, 3]", 0, NULL, 0, "not a dict"},
    {"empty dict", "{}", 0, NULL, 0, "no 'descr'"},
    {"missing shape", "{'descr': '<f4', 'fortran_order': False}", 0, NULL, 0, "no 'shape'"},
    {"duplicate key", "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': ()}", 4,
     NULL, 0, "twice"},
    {"unknown key", "{'descr': '<f4', 'fortran_order': False, 'shape': (), 'x': 1}", 4, NULL, 0,
     "unexpected key"},
    {"junk after dict", DICT("<f4", "False", "()") " junk", 4, NULL, 0, "junk"},
    {"unterminated string", "{'descr: '<f4', 'fortran_order': False, 'shape': ()}", 4, NULL, 0,
     "bad header"},
    {"missing colon", "{'descr' '<f4', 'fortran_order': False, 'shape': ()}", 4, NULL, 0,
     "expected ':'"},
    {"missing comma", "{'descr': '<f4' 'fortran_order': False, 'shape': ()}", 4, NULL, 0,
     "expected ','"},
    {"bad fortran_order", DICT("<f4", "yes", "()"), 4, NULL, 0, "True or False"},
    {"Truey", DICT("<f4", "Truey", "()"), 4, NULL, 0, "True or False"},
    {"shape not a tuple", DICT("<f4", "False", "[2, 3]"), 24, NULL, 0, "not a tuple"},
    {"shape (3)", DICT("<f4", "False", "(3)"), 12, NULL, 0, "not a tuple"},
    {"negative dimension", DICT("<f4", "False", "(-1, 2)"), 0, NULL, 0, "negative"},
    {"non-integer dimension", DICT("<f4", "False", "('a',)"), 0, NULL, 0, "not an integer"},
    {"float dimension", DICT("<f4", "False", "(2.5,)"), 0, NULL, 0, "malformed shape"},
    {"unclosed shape", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3", 0, NULL, 0,
     "bad header"},
    {"fortran order", DICT("<f4", "True", "(2, 3)"), 24, NULL, 0, "Fortran"},
    {"big-endian", DICT(">f4", "False", "(2, 3)"), 24, NULL, 0, "big-endian"},
    {"unknown dtype", DICT("<c8", "False", "(2, 3)"), 48, NULL, 0, "unsupported dtype '<c8'"},
    {"native byte order", DICT("=f4", "False", "(2, 3)"), 24, NULL, 0, "unsupported dtype"},
    {"object dtype", DICT("|O", "False", "(2, 3)"), 48, NULL, 0, "unsupported dtype"},
    {"structured dtype", "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8,
     NULL, 0, "structured"},
    {"overflowing shape", DICT("<f4", "False", "(4611686018427387904, 4611686018427387904)"), 0,
     NULL, 0, "overflows"},
    {"overflowing bytes", DICT("<f8", "False", "(4611686018427387904,)"), 0, NULL, 0, "overflows"},
    {"dimension past int64", DICT("<f4", "False", "(99999999999999999999,)"), 0, NULL, 0,
     "exceeds"},
    {"nine dimensions", DICT("<f4", "False", "(1, 1, 1, 1, 1, 1, 1, 1, 1)"), 4, NULL, 0,
     "more than 8"},
    {"absurd shape", DICT("<f4", "False", "(1099511627776,)"), 16, NULL, 0,
     "truncated data: header says 4398046511104 bytes, file has 16"},
    {"data too short", DICT("<f4", "False", "(2, 3)"), 20, NULL, 0,
     "truncated data: header says 24 bytes, file has 20"},
    {"data too long", DICT("<f4", "False", "(2, 3)"), 25, NULL, 0, "1 trailing bytes"},
    {"no data at all", DICT("<f8", "False", "(3,)"), 0, NULL, 0, "truncated data"},
};

static size_t build_bad(const bad_case *c, unsigned char *file, size_t cap) {
    if (c->dict == NULL) {
        memcpy(file, c->raw, c->raw_len);
        return c->raw_len;
    }
    static unsigned char zeros[64];
    return make_npy(file, cap, 1, c->dict, 64, zeros, c->data_len);
}

Test(npy, rejects_malformed_files_with_one_line_messages) {
    static unsigned char file[4096];
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        size_t len = build_bad(c, file, sizeof file);
        ta_npy_array a;
        char err[TA_NPY_ERR_LEN] = "";

        cr_assert_eq(ta_npy_parse(file, len, "mem.npy", &a, err, sizeof err), -1, "%s: accepted",
                     c->what);
        cr_assert_null(a.data);
        cr_assert_not_null(strstr(err, c->expect), "%s: message '%s' lacks '%s'", c->what, err,
                           c->expect);
        cr_assert_eq(strncmp(err, "mem.npy: ", 9), 0, "%s: '%s'", c->what, err);
        cr_assert_null(strchr(err, '\n'), "%s: message spans lines", c->what);

        const char *path = tu_path("bad.npy");
        cr_assert_eq(tu_write_file(path, file, len), 0);
        cr_assert_eq(ta_npy_read(path, &a, err, sizeof err), -1, "%s: read accepted", c->what);
        cr_assert_null(a.data);
        cr_assert_not_null(strstr(err, c->expect), "%s (file): '%s' lacks '%s'", c->what, err,
                           c->expect);
        cr_assert_eq(strncmp(err, path, strlen(path)), 0);
        cr_assert_null(strchr(err, '\n'));
    }
}

Test(npy, rejects_missing_files_directories_and_fifos) {
    ta_npy_array a;
    char err[TA_NPY_ERR_LEN];
    cr_assert_eq(ta_npy_read(tu_path("missing.npy"), &a, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "cannot open: No such file"), "%s", err);

    cr_assert_eq(mkdir(tu_path("dir.npy"), 0700), 0);
    cr_assert_eq(ta_npy_read(tu_path("dir.npy"), &a, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "directory"), "%s", err);

    /* A FIFO with no writer would block a plain open() forever. */
    cr_assert_eq(mkfifo(tu_path("fifo.npy"), 0600), 0);
    cr_assert_eq(ta_npy_read(tu_path("fifo.npy"), &a, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "not a regular file"), "%s", err);
}

/* Garbage must give an error or a consistent array, never a crash (the
 * sanitizer builds turn any stray access into a failure). */
static void parse_and_check(const unsigned char *bytes, size_t len) {
    ta_npy_array a;
    char err[TA_NPY_ERR_LEN];
    if (ta_npy_parse(bytes, len, "fuzz", &a, err, sizeof err) == 0) {
        cr_assert_eq(a.nbytes, a.count * ta_npy_dtype_size(a.dtype));
        cr_assert(a.nbytes <= len);
        cr_assert_not_null(a.data);
        ta_npy_free(&a);
    } else {
        cr_assert_null(a.data);
        cr_assert(strlen(err) > 6);
        cr_assert_null(strchr(err, '\n'));
    }
}

Test(npy, survives_random_garbage) {
    static unsigned char valid[256], bytes[512];
    float data[6] = {1, 2, 3, 4, 5, 6};
    size_t valid_len =
        make_npy(valid, sizeof valid, 1, DICT("<f4", "False", "(2, 3)"), 64, data, sizeof data);
    uint64_t state = 0x9E3779B97F4A7C15ULL;
    for (int iter = 0; iter < 20000; iter++) {
        size_t len;
        int kind = iter % 4;
        if (kind == 0) { /* flip a few bytes of a valid file */
            memcpy(bytes, valid, valid_len);
            len = valid_len;
            int flips = 1 + (int)tu_random_float(&state, 0, 4);
            for (int f = 0; f < flips; f++) {
                size_t at = (size_t)tu_random_float(&state, 0, (float)valid_len);
                bytes[at] = (unsigned char)tu_random_float(&state, 0, 256);
            }
        } else if (kind == 1) { /* truncate or extend */
            memcpy(bytes, valid, valid_len);
            len = (size_t)tu_random_float(&state, 0, (float)valid_len + 16);
            for (size_t i = valid_len; i < len; i++)
                bytes[i] = (unsigned char)i;
        } else if (kind == 2) { /* random bytes behind a valid magic */
            len = (size_t)tu_random_float(&state, 0, sizeof bytes);
            for (size_t i = 0; i < len; i++)
                bytes[i] = (unsigned char)tu_random_float(&state, 0, 256);
            memcpy(bytes, valid, len < 10 ? len : 10);
        } else { /* a header assembled from the grammar's own tokens */
            static const char *const tokens[] = {
                "{",
                "}",
                "(",
                ")",
                ",",
                ":",
                " ",
                "'descr'",
                "'shape'",
                "'fortran_order'",
                "'<f4'",
                "'|b1'",
                "True",
                "False",
                "0",
                "3",
                "9223372036854775807",
                "L",
                "'",
                "\"",
                "-",
                "[",
                "]",
                "\n",
            };
            char dict[200];
            size_t n = 0;
            int count = (int)tu_random_float(&state, 0, 24);
            for (int t = 0; t < count; t++) {
                const char *tok =
                    tokens[(size_t)tu_random_float(&state, 0, sizeof tokens / sizeof tokens[0])];
                if (n + strlen(tok) + 1 >= sizeof dict) break;
                memcpy(dict + n, tok, strlen(tok));
                n += strlen(tok);
            }
            dict[n] = '\0';
            len = make_npy(bytes, sizeof bytes, 1 + iter % 3, dict, 16, data,
                           (size_t)tu_random_float(&state, 0, sizeof data));
        }
        parse_and_check(bytes, len);
    }
    /* And through the file reader, whose header reading is separate. */
    for (int iter = 0; iter < 300; iter++) {
        memcpy(bytes, valid, valid_len);
        size_t len = (size_t)tu_random_float(&state, 0, (float)valid_len + 8);
        bytes[(size_t)tu_random_float(&state, 0, 12)] ^= (unsigned char)(iter & 1 ? 0 : 0x40);
        const char *path = tu_path("fuzz.npy");
        cr_assert_eq(tu_write_file(path, bytes, len), 0);
        ta_npy_array a;
        char err[TA_NPY_ERR_LEN];
        if (ta_npy_read(path, &a, err, sizeof err) == 0) ta_npy_free(&a);
    }
}

/* ------------------------------------------------------------------------ */
/* The writer. */

Test(npy, writes_what_numpy_writes) {
    float data[6] = {1, 2, 3, 4, 5, 6};
    int64_t shape[2] = {2, 3};
    char err[TA_NPY_ERR_LEN] = "";
    const char *path = tu_path("w.npy");
    cr_assert_eq(ta_npy_write(path, TA_NPY_F32, 2, shape, data, err, sizeof err), 0, "%s", err);
    size_t len;
    char *bytes = tu_read_file(path, &len);
    cr_assert_not_null(bytes);
    /* numpy.save's exact bytes for np.arange(1, 7, dtype='<f4').reshape(2, 3). */
    static const char header[] = "\x93NUMPY\x01\x00\x76\x00"
                                 "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    const size_t header_len = sizeof header - 1;
    cr_assert_eq(len, 128 + sizeof data);
    cr_assert_eq(memcmp(bytes, header, header_len), 0);
    for (size_t i = header_len; i < 127; i++)
        cr_assert_eq(bytes[i], ' ');
    cr_assert_eq(bytes[127], '\n');
    cr_assert_eq(memcmp(bytes + 128, data, sizeof data), 0);
    free(bytes);
}

Test(npy, round_trips_every_dtype_and_shape) {
    unsigned char data[64];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 11 + 3);
    const int64_t shapes[][3] = {{0, 0, 0}, {0, 0, 0}, {5, 0, 0}, {2, 2, 2}, {1, 0, 4}};
    const int ndims[] = {0, 1, 1, 3, 3};
    for (size_t t = 0; t < sizeof dtypes / sizeof dtypes[0]; t++) {
        for (size_t s = 0; s < sizeof ndims / sizeof ndims[0]; s++) {
            char err[TA_NPY_ERR_LEN] = "";
            const char *path = tu_path("rt.npy");
            cr_assert_eq(
                ta_npy_write(path, dtypes[t].dtype, ndims[s], shapes[s], data, err, sizeof err), 0,
                "%s", err);
            ta_npy_array a;
            cr_assert_eq(ta_npy_read(path, &a, err, sizeof err), 0, "%s", err);
            cr_assert_eq(a.dtype, dtypes[t].dtype);
            cr_assert_eq(a.ndim, ndims[s]);
            for (int d = 0; d < ndims[s]; d++)
                cr_assert_eq(a.shape[d], shapes[s][d]);
            cr_assert_eq(memcmp(a.data, data, a.nbytes), 0);
            ta_npy_free(&a);
        }
    }
    cr_assert_eq(tu_count_entries(), 1);
}

Test(npy, keeps_permissions_and_leaves_nothing_on_failure) {
    float data[2] = {1, 2};
    int64_t shape[1] = {2};
    char err[TA_NPY_ERR_LEN];
    const char *path = tu_path("p.npy");
    cr_assert_eq(tu_write_file(path, "old", 3), 0);
    cr_assert_eq(chmod(path, 0640), 0);
    cr_assert_eq(ta_npy_write(path, TA_NPY_F32, 1, shape, data, err, sizeof err), 0, "%s", err);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0640);

    umask(022);
    const char *fresh = tu_path("fresh.npy");
    cr_assert_eq(ta_npy_write(fresh, TA_NPY_F32, 1, shape, data, err, sizeof err), 0, "%s", err);
    cr_assert_eq(stat(fresh, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0644);

    /* A directory in the way: refused before anything is written. */
    cr_assert_eq(mkdir(tu_path("d.npy"), 0700), 0);
    cr_assert_eq(ta_npy_write(tu_path("d.npy"), TA_NPY_F32, 1, shape, data, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "is a directory"), "%s", err);
    cr_assert_not(tu_has_temp_leftovers());

    /* A rename that fails after the temporary file is written (the target
     * became a directory in between) removes the temporary file. */
    ta_npy_pending pending;
    const char *late = tu_path("late.npy");
    cr_assert_eq(ta_npy_write_temp(late, TA_NPY_F32, 1, shape, data, &pending, err, sizeof err), 0);
    cr_assert_eq(mkdir(late, 0700), 0);
    cr_assert_eq(ta_npy_commit(&pending, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "rename"), "%s", err);
    cr_assert_not(tu_has_temp_leftovers());
    cr_assert_eq(rmdir(late), 0);

    /* A missing directory: nothing is created. */
    cr_assert_eq(
        ta_npy_write(tu_path("no/such/dir.npy"), TA_NPY_F32, 1, shape, data, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "temporary"), "%s", err);

    /* Bad arguments fail before touching the disk. */
    int64_t bad_shape[1] = {-2};
    cr_assert_eq(ta_npy_write(tu_path("x.npy"), TA_NPY_F32, 1, bad_shape, data, err, sizeof err),
                 -1);
    cr_assert_eq(ta_npy_write(tu_path("x.npy"), TA_NPY_F32, 9, shape, data, err, sizeof err), -1);
    cr_assert_not(tu_exists(tu_path("x.npy")));
    cr_assert_eq(tu_count_entries(), 3); /* p.npy, fresh.npy, d.npy */
}

Test(npy, pending_writes_change_nothing_until_committed) {
    float data[2] = {1, 2};
    int64_t shape[1] = {2};
    char err[TA_NPY_ERR_LEN];
    const char *path = tu_path("o.npy");
    cr_assert_eq(tu_write_file(path, "precious", 8), 0);

    ta_npy_pending pending;
    cr_assert_eq(ta_npy_write_temp(path, TA_NPY_F32, 1, shape, data, &pending, err, sizeof err), 0);
    cr_assert(tu_has_temp_leftovers());
    size_t len;
    char *bytes = tu_read_file(path, &len);
    cr_assert_eq(len, 8);
    cr_assert_eq(memcmp(bytes, "precious", 8), 0);
    free(bytes);
    ta_npy_discard(&pending);
    ta_npy_discard(&pending); /* twice is harmless */
    cr_assert_not(tu_has_temp_leftovers());
    bytes = tu_read_file(path, &len);
    cr_assert_eq(memcmp(bytes, "precious", 8), 0);
    free(bytes);

    cr_assert_eq(ta_npy_write_temp(path, TA_NPY_F32, 1, shape, data, &pending, err, sizeof err), 0);
    cr_assert_eq(ta_npy_commit(&pending, err, sizeof err), 0, "%s", err);
    ta_npy_discard(&pending); /* after a commit: nothing left to remove */
    ta_npy_array a;
    cr_assert_eq(ta_npy_read(path, &a, err, sizeof err), 0, "%s", err);
    cr_assert_eq(((float *)a.data)[1], 2.0f);
    ta_npy_free(&a);
    cr_assert_eq(tu_count_entries(), 1);
}

static void expect_bytes(const char *path, const char *bytes) {
    size_t len;
    char *got = tu_read_file(path, &len);
    cr_assert_not_null(got, "%s unreadable", path);
    cr_expect(len == strlen(bytes) && memcmp(got, bytes, len) == 0, "%s: got '%.*s', want '%s'",
              path, (int)len, got, bytes);
    free(got);
}

/* Several outputs commit together or not at all: a failed rename puts back
 * the targets the same commit had already replaced. */
Test(npy, commit_all_puts_back_what_it_replaced) {
    float data[2] = {1, 2};
    int64_t shape[1] = {2};
    char err[TA_NPY_ERR_LEN];
    const char *a = tu_path("a.npy"), *b = tu_path("b.npy"), *c = tu_path("c.npy");
    cr_assert_eq(tu_write_file(a, "old a", 5), 0);
    cr_assert_eq(tu_write_file(b, "old b", 5), 0);
    ta_npy_pending p[3];
    cr_assert_eq(ta_npy_write_temp(a, TA_NPY_F32, 1, shape, data, &p[0], err, sizeof err), 0);
    cr_assert_eq(ta_npy_write_temp(c, TA_NPY_F32, 1, shape, data, &p[1], err, sizeof err), 0);
    cr_assert_eq(ta_npy_write_temp(b, TA_NPY_F32, 1, shape, data, &p[2], err, sizeof err), 0);
    /* b's rename will fail: a directory took its place meanwhile. */
    cr_assert_eq(unlink(b), 0);
    cr_assert_eq(mkdir(b, 0700), 0);
    cr_assert_eq(ta_npy_commit_all(p, 3, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "b.npy"), "%s", err);
    expect_bytes(a, "old a");    /* replaced, then put back */
    cr_assert_not(tu_exists(c)); /* created, then removed: it did not exist */
    cr_assert_not(tu_has_temp_leftovers());
    cr_assert_eq(rmdir(b), 0);

    /* The same three, nothing in the way: all replaced, no backups left. */
    cr_assert_eq(tu_write_file(b, "old b", 5), 0);
    cr_assert_eq(ta_npy_write_temp(a, TA_NPY_F32, 1, shape, data, &p[0], err, sizeof err), 0);
    cr_assert_eq(ta_npy_write_temp(c, TA_NPY_F32, 1, shape, data, &p[1], err, sizeof err), 0);
    cr_assert_eq(ta_npy_write_temp(b, TA_NPY_F32, 1, shape, data, &p[2], err, sizeof err), 0);
    cr_assert_eq(ta_npy_commit_all(p, 3, err, sizeof err), 0, "%s", err);
    const char *all[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        ta_npy_array x;
        cr_assert_eq(ta_npy_read(all[i], &x, err, sizeof err), 0, "%s", err);
        cr_expect_eq(((float *)x.data)[1], 2.0f);
        ta_npy_free(&x);
    }
    cr_assert_not(tu_has_temp_leftovers());
    cr_assert_eq(tu_count_entries(), 3);
}

/* Targets that are not plain files: a stream is written in place (a
 * rename would replace /dev/null itself), a symbolic link is followed (it
 * stays a link), and a name near the file-name limit still leaves room
 * for the temporary file's suffix. */
Test(npy, writes_streams_links_and_long_names) {
    float data[2] = {1, 2};
    int64_t shape[1] = {2};
    char err[TA_NPY_ERR_LEN];
    cr_assert_eq(ta_npy_write("/dev/null", TA_NPY_F32, 1, shape, data, err, sizeof err), 0, "%s",
                 err);
    struct stat st;
    cr_assert_eq(stat("/dev/null", &st), 0);
    cr_assert(S_ISCHR(st.st_mode), "/dev/null is no longer a character device");

    const char *real = tu_path("real.npy"), *link_path = tu_path("link.npy");
    cr_assert_eq(tu_write_file(real, "old", 3), 0);
    cr_assert_eq(symlink("real.npy", link_path), 0);
    cr_assert_eq(ta_npy_write(link_path, TA_NPY_F32, 1, shape, data, err, sizeof err), 0, "%s",
                 err);
    cr_assert_eq(lstat(link_path, &st), 0);
    cr_assert(S_ISLNK(st.st_mode), "the link was replaced by a file");
    ta_npy_array x;
    cr_assert_eq(ta_npy_read(real, &x, err, sizeof err), 0, "%s", err);
    cr_expect_eq(((float *)x.data)[1], 2.0f);
    ta_npy_free(&x);

    char name[256];
    memset(name, 'n', 251);
    memcpy(name + 251, ".npy", 5); /* 255 bytes, the longest a name may be */
    cr_assert_eq(ta_npy_write(tu_path(name), TA_NPY_F32, 1, shape, data, err, sizeof err), 0, "%s",
                 err);
    cr_assert(tu_exists(tu_path(name)));
    cr_assert_not(tu_has_temp_leftovers());
}

/* ------------------------------------------------------------------------ */
/* Conversions. */

Test(npy, converts_half_floats_exactly) {
    cr_assert_eq(ta_npy_half_to_float(0x3c00), 1.0f);
    cr_assert_eq(ta_npy_half_to_float(0xc000), -2.0f);
    cr_assert_eq(ta_npy_half_to_float(0x7bff), 65504.0f);
    cr_assert_eq(ta_npy_half_to_float(0x0001), 0x1p-24f);
    cr_assert_eq(ta_npy_half_to_float(0x0400), 0x1p-14f);
    cr_assert(isinf(ta_npy_half_to_float(0x7c00)));
    cr_assert(isnan(ta_npy_half_to_float(0x7e00)));
    cr_assert(signbit(ta_npy_half_to_float(0x8000)));

    /* Every half survives the round trip (NaNs stay NaN). */
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = ta_npy_half_to_float((uint16_t)h);
        uint16_t back = ta_npy_float_to_half(f);
        if (isnan(f))
            cr_assert(isnan(ta_npy_half_to_float(back)));
        else
            cr_assert_eq(back, h, "half 0x%04x came back as 0x%04x", h, back);
    }
    /* Ties go to even; past the largest half is infinity. */
    cr_assert_eq(ta_npy_float_to_half(1.0f + 0x1p-11f), 0x3c00);
    cr_assert_eq(ta_npy_float_to_half(1.0f + 0x3p-11f), 0x3c02);
    cr_assert_eq(ta_npy_float_to_half(65519.0f), 0x7bff);
    cr_assert_eq(ta_npy_float_to_half(65520.0f), 0x7c00);
    cr_assert_eq(ta_npy_float_to_half(0x1p-25f), 0x0000);
    cr_assert_eq(ta_npy_float_to_half(0x3p-26f), 0x0001);
}

Test(npy, converts_arrays_with_range_checks) {
    char err[TA_NPY_ERR_LEN];
    static unsigned char file[512];
    int64_t ints[3] = {0, 5, (int64_t)1 << 40};
    size_t len =
        make_npy(file, sizeof file, 1, DICT("<i8", "False", "(3,)"), 64, ints, sizeof ints);
    ta_npy_array a;
    cr_assert_eq(ta_npy_parse(file, len, "cu.npy", &a, err, sizeof err), 0);
    cr_assert_eq(ta_npy_convert(&a, TA_NPY_I32, "cu.npy", err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "does not fit int32"), "%s", err);
    cr_assert_eq(a.dtype, TA_NPY_I64); /* unchanged on failure */
    ((int64_t *)a.data)[2] = 9;
    cr_assert_eq(ta_npy_convert(&a, TA_NPY_I32, "cu.npy", err, sizeof err), 0, "%s", err);
    cr_assert_eq(a.dtype, TA_NPY_I32);
    cr_assert_eq(((int32_t *)a.data)[2], 9);
    cr_assert_eq(a.nbytes, 12);
    cr_assert_eq(ta_npy_convert(&a, TA_NPY_F32, "cu.npy", err, sizeof err), -1);
    ta_npy_free(&a);

    double big[2] = {1.5, 1e300};
    len = make_npy(file, sizeof file, 1, DICT("<f8", "False", "(2,)"), 64, big, sizeof big);
    cr_assert_eq(ta_npy_parse(file, len, "x.npy", &a, err, sizeof err), 0);
    cr_assert_eq(ta_npy_convert(&a, TA_NPY_F32, "x.npy", err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "does not fit float32"), "%s", err);
    ((double *)a.data)[1] = 1e5;
    cr_assert_eq(ta_npy_convert(&a, TA_NPY_F16, "x.npy", err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "does not fit float16"), "%s", err);
    ((double *)a.data)[1] = -0.25;
    cr_assert_eq(ta_npy_convert(&a, TA_NPY_F16, "x.npy", err, sizeof err), 0);
    cr_assert_eq(ta_npy_convert(&a, TA_NPY_F32, "x.npy", err, sizeof err), 0);
    cr_assert_eq(((float *)a.data)[0], 1.5f);
    cr_assert_eq(((float *)a.data)[1], -0.25f);
    ta_npy_free(&a);
}
