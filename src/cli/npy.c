/*
 * .npy reading and writing. The format (numpy/lib/format.py):
 *
 *   "\x93NUMPY" major minor  header_len (uint16 LE for 1.0, uint32 LE for
 *   2.0 and 3.0)  header  data
 *
 * where the header is a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * padded with spaces and a final '\n' so that the data starts at a multiple
 * of 64 bytes (16 in files from old NumPy versions). Version 3.0 only changes
 * the header's encoding from latin-1 to utf-8, which the small grammar
 * accepted here (ASCII keys, dtype strings, integers) does not see.
 */
#define _XOPEN_SOURCE 700 /* POSIX 2008 with realpath and S_ISVTX */

#include "npy.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c copies little-endian data as is: a big-endian host needs byte swapping here"
#endif

static const unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

static void set_error(char *err, size_t err_len, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_error(char *err, size_t err_len, const char *name, const char *fmt, ...) {
    if (err == NULL || err_len == 0) return;
    int prefix = snprintf(err, err_len, "%s: ", name != NULL ? name : "(npy)");
    if (prefix < 0 || (size_t)prefix >= err_len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + prefix, err_len - (size_t)prefix, fmt, ap);
    va_end(ap);
}

size_t ta_npy_dtype_size(ta_npy_dtype dtype) {
    switch (dtype) {
    case TA_NPY_F32:
    case TA_NPY_I32: return 4;
    case TA_NPY_F16: return 2;
    case TA_NPY_F64:
    case TA_NPY_I64: return 8;
    case TA_NPY_BOOL:
    case TA_NPY_U8: return 1;
    }
    return 0;
}

const char *ta_npy_dtype_name(ta_npy_dtype dtype) {
    switch (dtype) {
    case TA_NPY_F32: return "float32";
    case TA_NPY_F16: return "float16";
    case TA_NPY_F64: return "float64";
    case TA_NPY_BOOL: return "bool";
    case TA_NPY_U8: return "uint8";
    case TA_NPY_I32: return "int32";
    case TA_NPY_I64: return "int64";
    }
    return "unknown";
}

/* The descr strings NumPy writes for each dtype. */
static const char *dtype_descr(ta_npy_dtype dtype) {
    switch (dtype) {
    case TA_NPY_F32: return "<f4";
    case TA_NPY_F16: return "<f2";
    case TA_NPY_F64: return "<f8";
    case TA_NPY_BOOL: return "|b1";
    case TA_NPY_U8: return "|u1";
    case TA_NPY_I32: return "<i4";
    case TA_NPY_I64: return "<i8";
    }
    return NULL;
}

/* Writes "(2, 3)", "(3,)" or "()" into buf. */
static void format_shape(char *buf, size_t len, int ndim, const int64_t *shape) {
    size_t used = 0;
    int n = snprintf(buf, len, "(");
    used = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < ndim && used < len; i++) {
        n = snprintf(buf + used, len - used, "%s%lld", i > 0 ? ", " : "", (long long)shape[i]);
        if (n < 0) return;
        used += (size_t)n;
    }
    if (used < len) snprintf(buf + used, len - used, ndim == 1 ? ",)" : ")");
}

/* Copies at most 32 bytes of untrusted text into buf for a message,
 * replacing anything unprintable with '?'. */
static void quote_text(char *buf, size_t len, const unsigned char *text, size_t text_len) {
    size_t n = 0;
    for (size_t i = 0; i < text_len && i < 32 && n + 1 < len; i++)
        buf[n++] = (text[i] >= 0x20 && text[i] < 0x7f) ? (char)text[i] : '?';
    if (text_len > 32 && n + 3 < len) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    if (len > 0) buf[n < len ? n : len - 1] = '\0';
}

/* ------------------------------------------------------------------------ */
/* The header dict: a tiny parser for the Python literals NumPy writes. */

typedef struct cursor {
    const unsigned char *pos;
    const unsigned char *end;
} cursor;

static void skip_space(cursor *c) {
    while (c->pos < c->end &&
           (*c->pos == ' ' || *c->pos == '\t' || *c->pos == '\n' || *c->pos == '\r'))
        c->pos++;
}

static int peek(const cursor *c) {
    return c->pos < c->end ? *c->pos : -1;
}

static int is_word_char(int ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_';
}

/* Matches a keyword such as True that is not the start of a longer word. */
static int match_word(cursor *c, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(c->end - c->pos) < n || memcmp(c->pos, word, n) != 0) return 0;
    if (c->pos + n < c->end && is_word_char(c->pos[n])) return 0;
    c->pos += n;
    return 1;
}

/* A quoted string without escapes (none of the strings NumPy writes in a
 * header has any). */
static int parse_string(cursor *c, char *out, size_t cap, const char *name, char *err,
                        size_t err_len) {
    int quote = peek(c);
    if (quote != '\'' && quote != '"') {
        set_error(err, err_len, name, "bad header: expected a quoted string");
        return -1;
    }
    c->pos++;
    size_t n = 0;
    while (c->pos < c->end && *c->pos != quote) {
        if (*c->pos == '\\' || *c->pos == '\n') {
            set_error(err, err_len, name, "bad header: unsupported character in a string");
            return -1;
        }
        if (n + 1 >= cap) {
            set_error(err, err_len, name, "bad header: string too long");
            return -1;
        }
        out[n++] = (char)*c->pos++;
    }
    if (c->pos >= c->end) {
        set_error(err, err_len, name, "bad header: unterminated string");
        return -1;
    }
    c->pos++;
    out[n] = '\0';
    return 0;
}

static int parse_descr(cursor *c, ta_npy_dtype *dtype, const char *name, char *err,
                       size_t err_len) {
    if (peek(c) == '[') {
        set_error(err, err_len, name, "structured dtypes are not supported");
        return -1;
    }
    char descr[64];
    if (parse_string(c, descr, sizeof descr, name, err, err_len) != 0) return -1;
    static const struct {
        const char *descr;
        ta_npy_dtype dtype;
    } known[] = {
        {"<f4", TA_NPY_F32},
        {"<f2", TA_NPY_F16},
        {"<f8", TA_NPY_F64},
        {"<i4", TA_NPY_I32},
        {"<i8", TA_NPY_I64},
        {"|b1", TA_NPY_BOOL},
        {"|u1", TA_NPY_U8},
        /* Byte order means nothing for one-byte types; accept any mark. */
        {"<b1", TA_NPY_BOOL},
        {">b1", TA_NPY_BOOL},
        {"=b1", TA_NPY_BOOL},
        {"<u1", TA_NPY_U8},
        {">u1", TA_NPY_U8},
        {"=u1", TA_NPY_U8},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strcmp(descr, known[i].descr) == 0) {
            *dtype = known[i].dtype;
            return 0;
        }
    }
    char shown[48];
    quote_text(shown, sizeof shown, (const unsigned char *)descr, strlen(descr));
    if (descr[0] == '>') {
        set_error(err, err_len, name,
                  "big-endian data ('%s') is not supported: save it little-endian, "
                  "e.g. a.astype('<%s')",
                  shown, shown + 1);
        return -1;
    }
    set_error(err, err_len, name, "unsupported dtype '%s' (supported: <f4 <f2 <f8 |b1 |u1 <i4 <i8)",
              shown);
    return -1;
}

static int parse_shape(cursor *c, ta_npy_header *h, const char *name, char *err, size_t err_len) {
    if (peek(c) != '(') {
        set_error(err, err_len, name, "bad header: shape is not a tuple");
        return -1;
    }
    c->pos++;
    int ndim = 0;
    int saw_comma = 0;
    skip_space(c);
    while (peek(c) != ')') {
        int ch = peek(c);
        if (ch == '-') {
            set_error(err, err_len, name, "bad header: negative dimension in shape");
            return -1;
        }
        if (ch < '0' || ch > '9') {
            set_error(err, err_len, name, "bad header: shape holds something not an integer");
            return -1;
        }
        int64_t value = 0;
        while (peek(c) >= '0' && peek(c) <= '9') {
            int digit = peek(c) - '0';
            if (__builtin_mul_overflow(value, 10, &value) ||
                __builtin_add_overflow(value, digit, &value)) {
                set_error(err, err_len, name, "bad header: a dimension exceeds 2^63-1");
                return -1;
            }
            c->pos++;
        }
        if (peek(c) == 'L') /* Python 2's long suffix, in files NumPy wrote long ago */
            c->pos++;
        if (ndim >= TA_NPY_MAX_NDIM) {
            set_error(err, err_len, name, "more than %d dimensions are not supported",
                      TA_NPY_MAX_NDIM);
            return -1;
        }
        h->shape[ndim++] = value;
        skip_space(c);
        saw_comma = 0;
        if (peek(c) == ',') {
            saw_comma = 1;
            c->pos++;
            skip_space(c);
        } else if (peek(c) != ')') {
            set_error(err, err_len, name, "bad header: malformed shape tuple");
            return -1;
        }
    }
    if (ndim == 1 && !saw_comma) {
        /* Python reads "(3)" as the integer 3, and so does NumPy. */
        set_error(err, err_len, name, "bad header: shape (n) is not a tuple (want (n,))");
        return -1;
    }
    c->pos++;
    h->ndim = ndim;
    return 0;
}

static int parse_dict(const unsigned char *text, size_t len, ta_npy_header *h, int *fortran,
                      const char *name, char *err, size_t err_len) {
    cursor c = {text, text + len};
    int have_descr = 0, have_fortran = 0, have_shape = 0;
    skip_space(&c);
    if (peek(&c) != '{') {
        set_error(err, err_len, name, "bad header: not a dict");
        return -1;
    }
    c.pos++;
    for (;;) {
        skip_space(&c);
        if (peek(&c) == '}') {
            c.pos++;
            break;
        }
        char key[32];
        if (parse_string(&c, key, sizeof key, name, err, err_len) != 0) return -1;
        skip_space(&c);
        if (peek(&c) != ':') {
            set_error(err, err_len, name, "bad header: expected ':' after '%s'", key);
            return -1;
        }
        c.pos++;
        skip_space(&c);
        int *seen;
        int status;
        if (strcmp(key, "descr") == 0) {
            seen = &have_descr;
            status = parse_descr(&c, &h->dtype, name, err, err_len);
        } else if (strcmp(key, "fortran_order") == 0) {
            seen = &have_fortran;
            status = 0;
            if (match_word(&c, "True")) {
                *fortran = 1;
            } else if (match_word(&c, "False")) {
                *fortran = 0;
            } else {
                set_error(err, err_len, name, "bad header: fortran_order is not True or False");
                status = -1;
            }
        } else if (strcmp(key, "shape") == 0) {
            seen = &have_shape;
            status = parse_shape(&c, h, name, err, err_len);
        } else {
            char shown[48];
            quote_text(shown, sizeof shown, (const unsigned char *)key, strlen(key));
            set_error(err, err_len, name, "bad header: unexpected key '%s'", shown);
            return -1;
        }
        if (status != 0) return -1;
        if (*seen) {
            set_error(err, err_len, name, "bad header: key '%s' appears twice", key);
            return -1;
        }
        *seen = 1;
        skip_space(&c);
        if (peek(&c) == ',') {
            c.pos++;
        } else if (peek(&c) != '}') {
            set_error(err, err_len, name, "bad header: expected ',' or '}' after '%s'", key);
            return -1;
        }
    }
    skip_space(&c);
    if (c.pos != c.end) {
        set_error(err, err_len, name, "bad header: junk after the dict");
        return -1;
    }
    if (!have_descr || !have_fortran || !have_shape) {
        set_error(err, err_len, name, "bad header: no '%s' key",
                  !have_descr     ? "descr"
                  : !have_fortran ? "fortran_order"
                                  : "shape");
        return -1;
    }
    return 0;
}

/* Checks the magic, the version and the header length of a file of
 * file_size bytes whose first `avail` bytes are at b; sets *data_offset to
 * where the data starts (within the file). */
static int parse_preamble(const unsigned char *b, size_t avail, size_t file_size, const char *name,
                          int *major, size_t *prefix, size_t *data_offset, char *err,
                          size_t err_len) {
    if (file_size == 0) {
        set_error(err, err_len, name, "empty file (not a .npy file)");
        return -1;
    }
    size_t magic_seen = avail < sizeof npy_magic ? avail : sizeof npy_magic;
    if (memcmp(b, npy_magic, magic_seen) != 0) {
        set_error(err, err_len, name, "not a .npy file (bad magic bytes)");
        return -1;
    }
    if (avail < 8) {
        set_error(err, err_len, name, "truncated header (the file has %zu bytes)", file_size);
        return -1;
    }
    *major = b[6];
    int minor = b[7];
    if (!((*major >= 1 && *major <= 3) && minor == 0)) {
        set_error(err, err_len, name, "unsupported .npy format version %d.%d (want 1.0-3.0)",
                  *major, minor);
        return -1;
    }
    *prefix = *major == 1 ? 10 : 12;
    if (avail < *prefix) {
        set_error(err, err_len, name, "truncated header (the file has %zu bytes)", file_size);
        return -1;
    }
    size_t header_len = (size_t)b[8] | (size_t)b[9] << 8;
    if (*major > 1) header_len |= (size_t)b[10] << 16 | (size_t)b[11] << 24;
    if (header_len > TA_NPY_MAX_HEADER_BYTES) {
        set_error(err, err_len, name, "header length %zu is beyond the limit of %u bytes",
                  header_len, TA_NPY_MAX_HEADER_BYTES);
        return -1;
    }
    *data_offset = *prefix + header_len; /* cannot overflow: both are small */
    if (*data_offset > file_size) {
        set_error(err, err_len, name,
                  "truncated header: header length %zu goes beyond the end of the file "
                  "(%zu bytes)",
                  header_len, file_size);
        return -1;
    }
    return 0;
}

int ta_npy_parse_header(const void *bytes, size_t avail, size_t file_size, const char *name,
                        ta_npy_header *header, char *err, size_t err_len) {
    const unsigned char *b = bytes;
    memset(header, 0, sizeof *header);
    if (avail > file_size) avail = file_size;
    int major;
    size_t prefix, data_offset;
    if (parse_preamble(b, avail, file_size, name, &major, &prefix, &data_offset, err, err_len) != 0)
        return -1;
    if (avail < data_offset) {
        set_error(err, err_len, name, "truncated header: %zu of %zu bytes", avail, data_offset);
        return -1;
    }
    size_t header_len = data_offset - prefix;
    int fortran = 0;
    if (parse_dict(b + prefix, header_len, header, &fortran, name, err, err_len) != 0) return -1;

    size_t count = 1;
    for (int i = 0; i < header->ndim; i++) {
        if ((uint64_t)header->shape[i] > SIZE_MAX ||
            __builtin_mul_overflow(count, (size_t)header->shape[i], &count)) {
            char shape[256];
            format_shape(shape, sizeof shape, header->ndim, header->shape);
            set_error(err, err_len, name, "shape %s is too large: its element count overflows",
                      shape);
            return -1;
        }
    }
    size_t data_bytes;
    if (__builtin_mul_overflow(count, ta_npy_dtype_size(header->dtype), &data_bytes)) {
        char shape[256];
        format_shape(shape, sizeof shape, header->ndim, header->shape);
        set_error(err, err_len, name, "shape %s is too large: its byte size overflows", shape);
        return -1;
    }
    if (fortran) {
        /* Fortran and C order lay out the same bytes when at most one
         * dimension exceeds 1; otherwise the data would need a transpose. */
        int long_dims = 0;
        for (int i = 0; i < header->ndim; i++)
            long_dims += header->shape[i] > 1;
        if (long_dims > 1 && count > 0) {
            set_error(err, err_len, name,
                      "Fortran-order data is not supported: save np.ascontiguousarray(a)");
            return -1;
        }
    }
    size_t file_data = file_size - data_offset;
    if (file_data < data_bytes) {
        set_error(err, err_len, name, "truncated data: header says %zu bytes, file has %zu",
                  data_bytes, file_data);
        return -1;
    }
    if (file_data > data_bytes) {
        set_error(err, err_len, name,
                  "%zu trailing bytes after the data: header says %zu bytes, file has %zu",
                  file_data - data_bytes, data_bytes, file_data);
        return -1;
    }
    header->version_major = major;
    header->version_minor = 0;
    header->count = count;
    header->data_offset = data_offset;
    header->data_bytes = data_bytes;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Arrays in memory. */

static void *alloc_aligned(size_t bytes) {
    /* aligned_alloc wants a multiple of the alignment; an empty array still
     * gets a real (non-NULL) buffer. */
    size_t rounded = bytes == 0 ? TA_NPY_ALIGNMENT : bytes;
    if (rounded % TA_NPY_ALIGNMENT != 0) {
        size_t pad = TA_NPY_ALIGNMENT - rounded % TA_NPY_ALIGNMENT;
        if (__builtin_add_overflow(rounded, pad, &rounded)) return NULL;
    }
    return aligned_alloc(TA_NPY_ALIGNMENT, rounded);
}

static void array_from_header(ta_npy_array *array, const ta_npy_header *h, void *data) {
    array->dtype = h->dtype;
    array->ndim = h->ndim;
    memcpy(array->shape, h->shape, sizeof array->shape);
    array->count = h->count;
    array->nbytes = h->data_bytes;
    array->data = data;
}

int ta_npy_parse(const void *bytes, size_t len, const char *name, ta_npy_array *array, char *err,
                 size_t err_len) {
    memset(array, 0, sizeof *array);
    ta_npy_header h;
    if (ta_npy_parse_header(bytes, len, len, name, &h, err, err_len) != 0) return -1;
    void *data = alloc_aligned(h.data_bytes);
    if (data == NULL) {
        set_error(err, err_len, name, "out of memory for %zu bytes of data", h.data_bytes);
        return -1;
    }
    if (h.data_bytes > 0) memcpy(data, (const unsigned char *)bytes + h.data_offset, h.data_bytes);
    array_from_header(array, &h, data);
    return 0;
}

/* Reads exactly len bytes; returns the number read (less only at EOF or on
 * an error, with errno set for an error). */
static size_t read_full(int fd, void *buf, size_t len) {
    size_t done = 0;
    while (done < len) {
        size_t chunk = len - done;
        if (chunk > ((size_t)1 << 30)) chunk = (size_t)1 << 30;
        ssize_t n = read(fd, (unsigned char *)buf + done, chunk);
        if (n < 0) {
            if (errno == EINTR) continue;
            return done;
        }
        if (n == 0) {
            errno = 0;
            return done;
        }
        done += (size_t)n;
    }
    return done;
}

static int read_fd(int fd, const char *path, ta_npy_array *array, char *err, size_t err_len) {
    struct stat st;
    if (fstat(fd, &st) != 0) {
        set_error(err, err_len, path, "cannot stat: %s", strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        set_error(err, err_len, path, "is a directory, not a .npy file");
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        /* A pipe or a device could block or never end. */
        set_error(err, err_len, path, "not a regular file");
        return -1;
    }
    if (st.st_size < 0 || (uintmax_t)st.st_size > SIZE_MAX) {
        set_error(err, err_len, path, "file too large for this machine");
        return -1;
    }
    size_t file_size = (size_t)st.st_size;

    /* The fixed preamble tells how long the header is; then read the whole
     * header and parse it. */
    unsigned char preamble[12];
    size_t want = file_size < sizeof preamble ? file_size : sizeof preamble;
    size_t got = read_full(fd, preamble, want);
    if (got != want) {
        set_error(err, err_len, path, "read error: %s",
                  errno ? strerror(errno) : "file shrank while reading");
        return -1;
    }
    int major;
    size_t prefix, data_offset;
    if (parse_preamble(preamble, got, file_size, path, &major, &prefix, &data_offset, err,
                       err_len) != 0)
        return -1;
    unsigned char *head = malloc(data_offset);
    if (head == NULL) {
        set_error(err, err_len, path, "out of memory for the header");
        return -1;
    }
    /* A header shorter than the preamble we read is invalid anyway; the
     * parser below says so. */
    size_t have = got < data_offset ? got : data_offset;
    memcpy(head, preamble, have);
    if (read_full(fd, head + have, data_offset - have) != data_offset - have) {
        set_error(err, err_len, path, "read error: %s",
                  errno ? strerror(errno) : "file shrank while reading");
        free(head);
        return -1;
    }
    ta_npy_header h;
    int status = ta_npy_parse_header(head, data_offset, file_size, path, &h, err, err_len);
    free(head);
    if (status != 0) return -1;

    void *data = alloc_aligned(h.data_bytes);
    if (data == NULL) {
        set_error(err, err_len, path, "out of memory for %zu bytes of data", h.data_bytes);
        return -1;
    }
    /* The descriptor stands at data_offset: everything before it has been
     * read exactly once. */
    if (read_full(fd, data, h.data_bytes) != h.data_bytes) {
        set_error(err, err_len, path, "read error: %s",
                  errno ? strerror(errno) : "file shrank while reading");
        free(data);
        return -1;
    }
    array_from_header(array, &h, data);
    return 0;
}

int ta_npy_read(const char *path, ta_npy_array *array, char *err, size_t err_len) {
    memset(array, 0, sizeof *array);
    /* O_NONBLOCK so that opening a FIFO does not wait for a writer; it is
     * rejected as "not a regular file" right after. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        set_error(err, err_len, path, "cannot open: %s", strerror(errno));
        return -1;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) (void)fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    int status = read_fd(fd, path, array, err, err_len);
    close(fd);
    return status;
}

void ta_npy_free(ta_npy_array *array) {
    if (array == NULL) return;
    free(array->data);
    memset(array, 0, sizeof *array);
}

/* ------------------------------------------------------------------------ */
/* Conversions. */

float ta_npy_half_to_float(uint16_t half) {
    uint32_t sign = (uint32_t)(half & 0x8000u) << 16;
    uint32_t exponent = (half >> 10) & 0x1fu;
    uint32_t mantissa = half & 0x3ffu;
    uint32_t bits;
    if (exponent == 0) {
        /* Zero or subnormal: mantissa * 2^-24, exact in float32. */
        float magnitude = (float)mantissa * 0x1p-24f;
        return sign ? -magnitude : magnitude;
    } else if (exponent == 31) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    }
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* Round to nearest even, after F. Giesen's float_to_half_fast3_rtne. */
uint16_t ta_npy_float_to_half(float value) {
    const uint32_t f32_infinity = 255u << 23;
    const uint32_t f16_overflow = (127u + 16u) << 23; /* 2^16: rounds to inf */
    const uint32_t denorm_magic_bits = ((127u - 15u) + (23u - 10u) + 1u) << 23;
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    uint32_t sign = bits & 0x80000000u;
    bits ^= sign;
    uint16_t half;
    if (bits >= f16_overflow) {
        half = bits > f32_infinity ? 0x7e00 : 0x7c00;
    } else if (bits < (113u << 23)) {
        /* Below 2^-14: a subnormal half. Adding the magic number lets the
         * FPU do the rounding. */
        float magnitude, magic;
        memcpy(&magnitude, &bits, sizeof magnitude);
        memcpy(&magic, &denorm_magic_bits, sizeof magic);
        magnitude += magic;
        uint32_t rounded;
        memcpy(&rounded, &magnitude, sizeof rounded);
        half = (uint16_t)(rounded - denorm_magic_bits);
    } else {
        uint32_t mantissa_odd = (bits >> 13) & 1u;
        bits += ((uint32_t)(15 - 127) << 23) + 0xfffu;
        bits += mantissa_odd;
        half = (uint16_t)(bits >> 13);
    }
    return (uint16_t)(half | (sign >> 16));
}

static int is_float(ta_npy_dtype dtype) {
    return dtype == TA_NPY_F16 || dtype == TA_NPY_F32 || dtype == TA_NPY_F64;
}

static double load_float(const void *data, ta_npy_dtype dtype, size_t i) {
    switch (dtype) {
    case TA_NPY_F16: {
        uint16_t h;
        memcpy(&h, (const unsigned char *)data + 2 * i, 2);
        return ta_npy_half_to_float(h);
    }
    case TA_NPY_F32: {
        float f;
        memcpy(&f, (const unsigned char *)data + 4 * i, 4);
        return f;
    }
    default: {
        double d;
        memcpy(&d, (const unsigned char *)data + 8 * i, 8);
        return d;
    }
    }
}

int ta_npy_convert(ta_npy_array *array, ta_npy_dtype to, const char *name, char *err,
                   size_t err_len) {
    ta_npy_dtype from = array->dtype;
    if (from == to) return 0;
    int floats = is_float(from) && is_float(to);
    int ints = (from == TA_NPY_I64 && to == TA_NPY_I32) || (from == TA_NPY_I32 && to == TA_NPY_I64);
    if (!floats && !ints) {
        set_error(err, err_len, name, "cannot convert %s to %s", ta_npy_dtype_name(from),
                  ta_npy_dtype_name(to));
        return -1;
    }
    size_t bytes; /* cannot overflow: no wider than 2x a size that fit */
    if (__builtin_mul_overflow(array->count, ta_npy_dtype_size(to), &bytes)) {
        set_error(err, err_len, name, "too large to convert");
        return -1;
    }
    void *out = alloc_aligned(bytes);
    if (out == NULL) {
        set_error(err, err_len, name, "out of memory converting to %s", ta_npy_dtype_name(to));
        return -1;
    }
    for (size_t i = 0; i < array->count; i++) {
        if (ints) {
            int64_t v;
            if (from == TA_NPY_I64) {
                memcpy(&v, (const unsigned char *)array->data + 8 * i, 8);
                if (v < INT32_MIN || v > INT32_MAX) {
                    set_error(err, err_len, name, "value %lld at index %zu does not fit int32",
                              (long long)v, i);
                    free(out);
                    return -1;
                }
                int32_t w = (int32_t)v;
                memcpy((unsigned char *)out + 4 * i, &w, 4);
            } else {
                int32_t w;
                memcpy(&w, (const unsigned char *)array->data + 4 * i, 4);
                v = w;
                memcpy((unsigned char *)out + 8 * i, &v, 8);
            }
            continue;
        }
        double v = load_float(array->data, from, i);
        if (to == TA_NPY_F64) {
            memcpy((unsigned char *)out + 8 * i, &v, 8);
        } else if (to == TA_NPY_F32) {
            float f = (float)v;
            if (isinf(f) && isfinite(v)) {
                set_error(err, err_len, name, "value %g at index %zu does not fit float32", v, i);
                free(out);
                return -1;
            }
            memcpy((unsigned char *)out + 4 * i, &f, 4);
        } else {
            /* Through float32: a float64 that rounds to a float32 tie could
             * round twice, but half of float32's 13 extra bits are far from
             * the half's rounding point except in contrived cases. */
            float f = (float)v;
            uint16_t h = ta_npy_float_to_half(f);
            if ((h & 0x7fffu) == 0x7c00u && isfinite(v)) {
                set_error(err, err_len, name, "value %g at index %zu does not fit float16", v, i);
                free(out);
                return -1;
            }
            memcpy((unsigned char *)out + 2 * i, &h, 2);
        }
    }
    free(array->data);
    array->data = out;
    array->dtype = to;
    array->nbytes = bytes;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Atomic writing. */

/* Writes all of buf; 0 on success, -1 with errno set. */
static int write_full(int fd, const void *buf, size_t len) {
    size_t done = 0;
    while (done < len) {
        size_t chunk = len - done;
        if (chunk > ((size_t)1 << 30)) chunk = (size_t)1 << 30;
        ssize_t n = write(fd, (const unsigned char *)buf + done, chunk);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (n == 0) {
            errno = EIO;
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

/* Builds the header NumPy would write, padded so that the data starts at a
 * multiple of 64 bytes. Returns its length (prefix included), 0 if it does
 * not fit in cap. */
static size_t build_header(unsigned char *out, size_t cap, ta_npy_dtype dtype, int ndim,
                           const int64_t *shape) {
    char shape_text[256];
    format_shape(shape_text, sizeof shape_text, ndim, shape);
    char dict[400];
    int dict_len =
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                 dtype_descr(dtype), shape_text);
    if (dict_len < 0 || (size_t)dict_len >= sizeof dict) return 0;
    /* With at most 8 dimensions the dict is far below 65535 bytes, so
     * version 1.0 (a 2-byte length) always suffices. */
    size_t prefix = 10;
    size_t total = prefix + (size_t)dict_len + 1; /* + '\n' */
    size_t padded = (total + TA_NPY_ALIGNMENT - 1) / TA_NPY_ALIGNMENT * TA_NPY_ALIGNMENT;
    if (padded > cap) return 0;
    size_t header_len = padded - prefix;
    memcpy(out, npy_magic, sizeof npy_magic);
    out[6] = 1;
    out[7] = 0;
    out[8] = (unsigned char)(header_len & 0xff);
    out[9] = (unsigned char)(header_len >> 8);
    memcpy(out + prefix, dict, (size_t)dict_len);
    memset(out + prefix + dict_len, ' ', padded - prefix - (size_t)dict_len - 1);
    out[padded - 1] = '\n';
    return padded;
}

char *ta_npy_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    if (slash == NULL) return strdup(".");
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    char *dir = malloc(len + 1);
    if (dir != NULL) {
        memcpy(dir, path, len);
        dir[len] = '\0';
    }
    return dir;
}

/* The longest file name (one path component) Linux accepts. */
#define TA_NAME_MAX 255

/* A name beside path for a temporary or backup file: "<name>.<tag>.XXXXXX"
 * (for mkstemp), with <name> cut short where the whole would pass
 * TA_NAME_MAX, so that a legal target name never makes the temporary one
 * illegal. NULL when out of memory. */
static char *sibling_template(const char *path, const char *tag) {
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash != NULL ? (size_t)(slash - path) + 1 : 0;
    size_t name_len = strlen(path + dir_len), extra = strlen(tag) + 8; /* ".tag.XXXXXX" */
    size_t keep = name_len + extra <= TA_NAME_MAX ? name_len : TA_NAME_MAX - extra;
    char *t = malloc(dir_len + keep + extra + 1);
    if (t == NULL) return NULL;
    memcpy(t, path, dir_len + keep);
    snprintf(t + dir_len + keep, extra + 1, ".%s.XXXXXX", tag);
    return t;
}

typedef enum target_kind {
    TARGET_NEW,    /* nothing there yet */
    TARGET_FILE,   /* a regular file: replaced by a rename */
    TARGET_STREAM, /* a character device (/dev/null) or a FIFO: written in place */
} target_kind;

/* What path names, before anything is written: a directory, a block
 * device or a socket is refused (no rename could replace it sensibly); a
 * symbolic link to a file resolves to that file, so the link stays a link;
 * a file in a sticky directory that belongs to someone else is refused
 * too, since the rename over it would fail after the other outputs were
 * in place. *mode: the permissions the new file gets (the target's, else
 * 0666 minus the umask; mkstemp itself uses 0600). *resolved: where to
 * write, to be freed. */
static int inspect_target(const char *path, char **resolved, target_kind *kind, mode_t *mode,
                          char *err, size_t err_len) {
    struct stat st;
    *resolved = NULL;
    if (stat(path, &st) != 0) {
        mode_t mask = umask(0);
        umask(mask);
        *mode = 0666 & ~mask;
        *kind = TARGET_NEW;
    } else if (S_ISDIR(st.st_mode)) {
        set_error(err, err_len, path, "is a directory");
        return -1;
    } else if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode)) {
        *kind = TARGET_STREAM;
    } else if (!S_ISREG(st.st_mode)) {
        set_error(err, err_len, path, "is not a regular file (nor a character device or a FIFO)");
        return -1;
    } else {
        *mode = st.st_mode & 07777;
        *kind = TARGET_FILE;
    }
    struct stat link_st;
    if (*kind == TARGET_FILE && lstat(path, &link_st) == 0 && S_ISLNK(link_st.st_mode))
        *resolved = realpath(path, NULL);
    else
        *resolved = strdup(path);
    if (*resolved == NULL) {
        set_error(err, err_len, path, "cannot resolve it: %s", strerror(errno));
        return -1;
    }
    if (*kind == TARGET_FILE && geteuid() != 0 && st.st_uid != geteuid()) {
        char *dir = ta_npy_parent_dir(*resolved);
        struct stat dir_st;
        int sticky = dir != NULL && stat(dir, &dir_st) == 0 && (dir_st.st_mode & S_ISVTX) &&
                     dir_st.st_uid != geteuid();
        free(dir);
        if (sticky) {
            set_error(err, err_len, path,
                      "belongs to another user in a sticky directory: it cannot be replaced");
            free(*resolved);
            *resolved = NULL;
            return -1;
        }
    }
    return 0;
}

static int write_npy(int fd, const unsigned char *header, size_t header_bytes, const void *data,
                     size_t data_bytes) {
    return write_full(fd, header, header_bytes) != 0 ||
                   (data_bytes > 0 && write_full(fd, data, data_bytes) != 0)
               ? -1
               : 0;
}

int ta_npy_write_temp(const char *path, ta_npy_dtype dtype, int ndim, const int64_t *shape,
                      const void *data, ta_npy_pending *pending, char *err, size_t err_len) {
    memset(pending, 0, sizeof *pending);
    if (dtype_descr(dtype) == NULL) {
        set_error(err, err_len, path, "cannot write an unknown dtype");
        return -1;
    }
    if (ndim < 0 || ndim > TA_NPY_MAX_NDIM) {
        set_error(err, err_len, path, "cannot write %d dimensions", ndim);
        return -1;
    }
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (uint64_t)shape[i] > SIZE_MAX ||
            __builtin_mul_overflow(count, (size_t)shape[i], &count)) {
            set_error(err, err_len, path, "cannot write a shape with a bad dimension");
            return -1;
        }
    }
    size_t data_bytes;
    if (__builtin_mul_overflow(count, ta_npy_dtype_size(dtype), &data_bytes)) {
        set_error(err, err_len, path, "array too large to write");
        return -1;
    }
    if (data == NULL && data_bytes > 0) {
        set_error(err, err_len, path, "no data to write");
        return -1;
    }
    unsigned char header[512];
    size_t header_bytes = build_header(header, sizeof header, dtype, ndim, shape);
    if (header_bytes == 0) {
        set_error(err, err_len, path, "header does not fit");
        return -1;
    }

    mode_t mode = 0;
    target_kind kind;
    char *target;
    if (inspect_target(path, &target, &kind, &mode, err, err_len) != 0) return -1;

    if (kind == TARGET_STREAM) { /* nothing to keep or replace: write it now */
        int fd = open(target, O_WRONLY | O_CLOEXEC);
        int failed = fd < 0 || write_npy(fd, header, header_bytes, data, data_bytes) != 0;
        int saved_errno = errno;
        if (fd >= 0 && close(fd) != 0 && !failed) failed = 1, saved_errno = errno;
        if (failed) {
            set_error(err, err_len, path, "write failed: %s", strerror(saved_errno));
            free(target);
            return -1;
        }
        pending->path = target;
        pending->written = 1;
        return 0;
    }

    char *tmp_path = sibling_template(target, "tmp");
    if (tmp_path == NULL) {
        free(target);
        set_error(err, err_len, path, "out of memory");
        return -1;
    }
    int fd = mkstemp(tmp_path);
    if (fd < 0) {
        set_error(err, err_len, path, "cannot create a temporary file beside it: %s",
                  strerror(errno));
        free(tmp_path);
        free(target);
        return -1;
    }
    const char *failed = NULL;
    if (fchmod(fd, mode) != 0)
        failed = "cannot set permissions";
    else if (write_npy(fd, header, header_bytes, data, data_bytes) != 0)
        failed = "write failed";
    else if (fsync(fd) != 0)
        failed = "fsync failed";
    int saved_errno = errno;
    if (close(fd) != 0 && failed == NULL) {
        failed = "close failed";
        saved_errno = errno;
    }
    if (failed != NULL) {
        set_error(err, err_len, path, "%s: %s", failed, strerror(saved_errno));
        unlink(tmp_path);
        free(tmp_path);
        free(target);
        return -1;
    }
    pending->path = target;
    pending->tmp_path = tmp_path;
    return 0;
}

/* Makes the rename durable; failure here only risks the rename being lost
 * in a crash, which still leaves one whole file, so it is not an error. */
static void sync_parent_dir(const char *path) {
    char *dir = ta_npy_parent_dir(path);
    if (dir == NULL) return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

/* A second name for the existing file at path, beside it, so that it can
 * be put back if a later rename of the same commit fails. NULL if none
 * could be made (a file system without hard links, say). */
static char *link_backup(const char *path) {
    for (int attempt = 0; attempt < 8; attempt++) {
        char *name = sibling_template(path, "bak");
        if (name == NULL) return NULL;
        int fd = mkstemp(name); /* reserves a fresh name */
        if (fd < 0) {
            free(name);
            return NULL;
        }
        close(fd);
        unlink(name);
        if (link(path, name) == 0) return name;
        int e = errno;
        free(name);
        if (e != EEXIST) return NULL; /* EEXIST: the name was taken meanwhile */
    }
    return NULL;
}

static void release(ta_npy_pending *pending) {
    if (pending->tmp_path != NULL) unlink(pending->tmp_path);
    free(pending->tmp_path);
    free(pending->path);
    memset(pending, 0, sizeof *pending);
}

int ta_npy_commit_all(ta_npy_pending *pending, int n, char *err, size_t err_len) {
    enum { MAX = 8 };
    if (n < 0 || n > MAX) {
        set_error(err, err_len, NULL, "cannot commit %d files at once", n);
        for (int i = 0; i < n; i++)
            release(&pending[i]);
        return -1;
    }
    char *backup[MAX] = {NULL};
    int existed[MAX] = {0}, renamed[MAX] = {0}, failed_at = -1;
    for (int i = 0; i < n && failed_at < 0; i++) {
        if (pending[i].tmp_path == NULL) {
            if (!pending[i].written) {
                set_error(err, err_len, pending[i].path, "nothing to commit");
                failed_at = i;
            }
            continue;
        }
        struct stat st;
        existed[i] = lstat(pending[i].path, &st) == 0;
        /* Only a file that a later rename could still leave replaced needs
         * a way back. */
        int later = 0;
        for (int j = i + 1; j < n; j++)
            later |= pending[j].tmp_path != NULL;
        if (existed[i] && later) backup[i] = link_backup(pending[i].path);
        if (rename(pending[i].tmp_path, pending[i].path) != 0) {
            set_error(err, err_len, pending[i].path, "cannot rename the temporary file over it: %s",
                      strerror(errno));
            failed_at = i;
        } else {
            renamed[i] = 1;
            free(pending[i].tmp_path);
            pending[i].tmp_path = NULL;
        }
    }
    if (failed_at >= 0) { /* put back what this commit already replaced */
        for (int i = 0; i < failed_at; i++) {
            if (!renamed[i]) continue;
            if (backup[i] != NULL && rename(backup[i], pending[i].path) == 0) {
                free(backup[i]);
                backup[i] = NULL;
            } else if (!existed[i]) {
                unlink(pending[i].path);
            } else if (err != NULL && err_len > 0) { /* say so: the promise was not kept */
                size_t used = strlen(err);
                snprintf(err + used, err_len - used, " (%s was already replaced)", pending[i].path);
            }
        }
    } else {
        for (int i = 0; i < n; i++)
            if (renamed[i]) sync_parent_dir(pending[i].path);
    }
    for (int i = 0; i < n; i++) {
        if (backup[i] != NULL) unlink(backup[i]);
        free(backup[i]);
        release(&pending[i]);
    }
    return failed_at >= 0 ? -1 : 0;
}

int ta_npy_commit(ta_npy_pending *pending, char *err, size_t err_len) {
    return ta_npy_commit_all(pending, 1, err, err_len);
}

void ta_npy_discard(ta_npy_pending *pending) {
    if (pending == NULL) return;
    release(pending);
}

int ta_npy_write(const char *path, ta_npy_dtype dtype, int ndim, const int64_t *shape,
                 const void *data, char *err, size_t err_len) {
    ta_npy_pending pending;
    if (ta_npy_write_temp(path, dtype, ndim, shape, data, &pending, err, err_len) != 0) return -1;
    return ta_npy_commit(&pending, err, err_len);
}
