/*
 * .npy files (NumPy's array format), read and written with care.
 *
 * Reading accepts format versions 1.0, 2.0 and 3.0, C order, little-endian
 * data of the dtypes below, and rejects everything else with one line of
 * explanation: the reader never trusts a size it has not checked against the
 * file. Writing is atomic: the bytes go to a temporary file in the target's
 * directory, which is fsync'ed and then renamed over the target, so a reader
 * of the target sees either the old file or the whole new one.
 *
 * Every function that can fail returns 0 on success and -1 on failure, after
 * writing a message (prefixed with the file's name) into err.
 */
#ifndef TA_CLI_NPY_H
#define TA_CLI_NPY_H

#include <stddef.h>
#include <stdint.h>

/* NumPy's own limit for array dimensions is 64; tensors here have at most 4. */
#define TA_NPY_MAX_NDIM 8

/* A header longer than this is refused before it is read: NumPy itself
 * refuses headers above 10000 bytes unless told otherwise. */
#define TA_NPY_MAX_HEADER_BYTES (1u << 20)

/* The data of a read array starts at an address that is a multiple of this. */
#define TA_NPY_ALIGNMENT 64

/* Enough room for any message these functions write. */
#define TA_NPY_ERR_LEN 512

typedef enum ta_npy_dtype {
    TA_NPY_F32,  /* '<f4' */
    TA_NPY_F16,  /* '<f2', IEEE binary16 */
    TA_NPY_F64,  /* '<f8' */
    TA_NPY_BOOL, /* '|b1' */
    TA_NPY_U8,   /* '|u1' */
    TA_NPY_I32,  /* '<i4' */
    TA_NPY_I64,  /* '<i8' */
} ta_npy_dtype;

/* Bytes per element. */
size_t ta_npy_dtype_size(ta_npy_dtype dtype);

/* NumPy's name of the dtype: "float32", "bool"... */
const char *ta_npy_dtype_name(ta_npy_dtype dtype);

/* What a header says, checked against the size of the file it came from. */
typedef struct ta_npy_header {
    int version_major, version_minor;
    ta_npy_dtype dtype;
    int ndim;
    int64_t shape[TA_NPY_MAX_NDIM];
    size_t count;       /* elements: the product of shape (1 for shape ()) */
    size_t data_offset; /* bytes from the start of the file to the data */
    size_t data_bytes;  /* count * element size */
} ta_npy_header;

/* An array in memory. data is aligned to TA_NPY_ALIGNMENT and never NULL
 * after a successful read, even for an empty array; free it with
 * ta_npy_free. */
typedef struct ta_npy_array {
    ta_npy_dtype dtype;
    int ndim;
    int64_t shape[TA_NPY_MAX_NDIM];
    size_t count;
    size_t nbytes;
    void *data;
} ta_npy_array;

/* Parses the first `avail` bytes of a .npy file of file_size bytes (avail
 * must cover the whole header; fewer bytes is a "truncated header" error).
 * name prefixes messages. */
int ta_npy_parse_header(const void *bytes, size_t avail, size_t file_size, const char *name,
                        ta_npy_header *header, char *err, size_t err_len);

/* Parses a whole .npy file held in memory, copying its data into an aligned
 * buffer. */
int ta_npy_parse(const void *bytes, size_t len, const char *name, ta_npy_array *array, char *err,
                 size_t err_len);

/* Reads the .npy file at path (a regular file) into memory. On failure
 * array is left empty (safe to pass to ta_npy_free). */
int ta_npy_read(const char *path, ta_npy_array *array, char *err, size_t err_len);

/* Frees the data and zeroes the array. Safe on a zeroed array. */
void ta_npy_free(ta_npy_array *array);

/* Converts the array in place to dtype `to`. Supported: between float16,
 * float32 and float64 (float64 to float32 or float16 fails if a finite value
 * does not fit), int64 to int32 (fails if a value does not fit) and int32 to
 * int64, and the identity. name prefixes messages. */
int ta_npy_convert(ta_npy_array *array, ta_npy_dtype to, const char *name, char *err,
                   size_t err_len);

/* IEEE binary16 <-> binary32. float to half rounds to nearest even and
 * overflows to infinity; NaN stays NaN. */
float ta_npy_half_to_float(uint16_t half);
uint16_t ta_npy_float_to_half(float value);

/* The directory part of path ("." when it has none, "/" for "/name"),
 * malloc'ed; NULL when out of memory. */
char *ta_npy_parent_dir(const char *path);

/* A file written but not yet in place: see ta_npy_write_temp. */
typedef struct ta_npy_pending {
    char *path;     /* the target (a symbolic link resolved to its file) */
    char *tmp_path; /* "<path>.tmp.XXXXXX", in the target's directory */
    int written;    /* a stream target, already written in place */
} ta_npy_pending;

/* Writes the array (ndim dims of shape, data of count * dtype size bytes) to
 * a new temporary file beside path, fsync'ed, with the target's permissions
 * if it exists (else 0666 minus the umask). Nothing at path changes until
 * ta_npy_commit; on failure no temporary file is left. A target that is a
 * stream (a character device such as /dev/null, or a FIFO) has nothing to
 * replace: it is written here, in place. A directory, a block device, a
 * socket, or another user's file in a sticky directory is refused before
 * anything is written. */
int ta_npy_write_temp(const char *path, ta_npy_dtype dtype, int ndim, const int64_t *shape,
                      const void *data, ta_npy_pending *pending, char *err, size_t err_len);

/* Renames the temporary files over their targets, in order: all of them or
 * none. When a rename fails, the targets this call already replaced are
 * put back (from a hard link made just before each rename; one that could
 * not be made leaves that target replaced), the rest stay as they were,
 * and the temporary files are removed. The pending files are released
 * either way. At most 8. */
int ta_npy_commit_all(ta_npy_pending *pending, int n, char *err, size_t err_len);

/* ta_npy_commit_all of one file. */
int ta_npy_commit(ta_npy_pending *pending, char *err, size_t err_len);

/* Removes the temporary file, leaving the target alone. Safe to call on a
 * released or zeroed pending file. */
void ta_npy_discard(ta_npy_pending *pending);

/* Writes a whole file atomically: ta_npy_write_temp then ta_npy_commit. */
int ta_npy_write(const char *path, ta_npy_dtype dtype, int ndim, const int64_t *shape,
                 const void *data, char *err, size_t err_len);

#endif /* TA_CLI_NPY_H */
