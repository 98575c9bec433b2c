/*
 * The part of the libjpeg 6.2 binary interface (libjpeg.so.62, as libjpeg-turbo builds it by
 * default) that fastload._jpeg calls, declared here so the extension builds without any JPEG
 * headers installed: the library is found at run time (Pillow's wheels ship libjpeg-turbo as
 * libjpeg.so.62) and opened with dlopen.
 *
 * The layouts follow the documented 6.2 API (libjpeg.txt of the IJG release 6b; libjpeg-turbo keeps
 * that ABI for its default build). A mismatch cannot go unnoticed: jpeg_CreateDecompress compares
 * the caller's version (62) and sizeof(struct jpeg_decompress_struct) with its own and fails with
 * "Wrong JPEG library version" or "JPEG parameter struct mismatch" otherwise, which turns the
 * window decoder off (fastload then decodes whole images with simplejpeg).
 */
#ifndef FASTLOAD_LIBJPEG62_ABI_H
#define FASTLOAD_LIBJPEG62_ABI_H

#include <stddef.h>

#define JPEG62_VERSION 62
#define JPEG62_MSG_LENGTH_MAX 200
#define JPEG62_NUM_QUANT_TBLS 4
#define JPEG62_NUM_HUFF_TBLS 4
#define JPEG62_NUM_ARITH_TBLS 16
#define JPEG62_MAX_COMPS_IN_SCAN 4
#define JPEG62_D_MAX_BLOCKS_IN_MCU 10
#define JPEG62_DCTSIZE2 64

typedef int jboolean;          /* libjpeg's boolean: an int */
typedef unsigned int jdimension; /* JDIMENSION */
typedef unsigned char juint8;
typedef unsigned short juint16;

/* J_COLOR_SPACE values used here */
enum { JPEG62_JCS_GRAYSCALE = 1, JPEG62_JCS_RGB = 2, JPEG62_JCS_YCbCr = 3, JPEG62_JCS_CMYK = 4,
       JPEG62_JCS_YCCK = 5 };
/* J_DCT_METHOD */
enum { JPEG62_JDCT_ISLOW = 0, JPEG62_JDCT_IFAST = 1 };

struct jpeg62_common;

struct jpeg62_error_mgr {
    void (*error_exit)(struct jpeg62_common *cinfo);
    void (*emit_message)(struct jpeg62_common *cinfo, int msg_level);
    void (*output_message)(struct jpeg62_common *cinfo);
    void (*format_message)(struct jpeg62_common *cinfo, char *buffer);
    void (*reset_error_mgr)(struct jpeg62_common *cinfo);
    int msg_code;
    union { int i[8]; char s[80]; } msg_parm;
    int trace_level;
    long num_warnings;
    const char *const *jpeg_message_table;
    int last_jpeg_message;
    const char *const *addon_message_table;
    int first_addon_message;
    int last_addon_message;
};

/* The fields every libjpeg object starts with (jpeg_common_fields). */
#define JPEG62_COMMON_FIELDS \
    struct jpeg62_error_mgr *err; \
    void *mem; \
    void *progress; \
    void *client_data; \
    jboolean is_decompressor; \
    int global_state

struct jpeg62_common { JPEG62_COMMON_FIELDS; };

struct jpeg62_decompress {
    JPEG62_COMMON_FIELDS;
    void *src;
    /* from the header */
    jdimension image_width;
    jdimension image_height;
    int num_components;
    int jpeg_color_space;
    /* decompression parameters, set between jpeg_read_header and jpeg_start_decompress */
    int out_color_space;
    unsigned int scale_num, scale_denom;
    double output_gamma;
    jboolean buffered_image;
    jboolean raw_data_out;
    int dct_method;
    jboolean do_fancy_upsampling;
    jboolean do_block_smoothing;
    jboolean quantize_colors;
    int dither_mode;
    jboolean two_pass_quantize;
    int desired_number_of_colors;
    jboolean enable_1pass_quant;
    jboolean enable_external_quant;
    jboolean enable_2pass_quant;
    /* output description, known after jpeg_start_decompress */
    jdimension output_width;
    jdimension output_height;
    int out_color_components;
    int output_components;
    int rec_outbuf_height;
    int actual_number_of_colors;
    void *colormap;
    jdimension output_scanline;
    /* the rest: state the library keeps; only its size matters here */
    int input_scan_number;
    jdimension input_iMCU_row;
    int output_scan_number;
    jdimension output_iMCU_row;
    void *coef_bits;
    void *quant_tbl_ptrs[JPEG62_NUM_QUANT_TBLS];
    void *dc_huff_tbl_ptrs[JPEG62_NUM_HUFF_TBLS];
    void *ac_huff_tbl_ptrs[JPEG62_NUM_HUFF_TBLS];
    int data_precision;
    void *comp_info;
    jboolean progressive_mode;
    jboolean arith_code;
    juint8 arith_dc_L[JPEG62_NUM_ARITH_TBLS];
    juint8 arith_dc_U[JPEG62_NUM_ARITH_TBLS];
    juint8 arith_ac_K[JPEG62_NUM_ARITH_TBLS];
    unsigned int restart_interval;
    jboolean saw_JFIF_marker;
    juint8 JFIF_major_version;
    juint8 JFIF_minor_version;
    juint8 density_unit;
    juint16 X_density;
    juint16 Y_density;
    jboolean saw_Adobe_marker;
    juint8 Adobe_transform;
    jboolean CCIR601_sampling;
    void *marker_list;
    int max_h_samp_factor;
    int max_v_samp_factor;
    int min_DCT_scaled_size;
    jdimension total_iMCU_rows;
    void *sample_range_limit;
    int comps_in_scan;
    void *cur_comp_info[JPEG62_MAX_COMPS_IN_SCAN];
    jdimension MCUs_per_row;
    jdimension MCU_rows_in_scan;
    int blocks_in_MCU;
    int MCU_membership[JPEG62_D_MAX_BLOCKS_IN_MCU];
    int Ss, Se, Ah, Al;
    int unread_marker;
    void *master;
    void *main;
    void *coef;
    void *post;
    void *inputctl;
    void *marker;
    void *entropy;
    void *idct;
    void *upsample;
    void *cconvert;
    void *cquantize;
};

/* The entry points fastload._jpeg resolves with dlsym. */
struct jpeg62_api {
    struct jpeg62_error_mgr *(*std_error)(struct jpeg62_error_mgr *err);
    void (*create_decompress)(struct jpeg62_decompress *cinfo, int version, size_t structsize);
    void (*destroy_decompress)(struct jpeg62_decompress *cinfo);
    void (*abort_decompress)(struct jpeg62_decompress *cinfo);
    void (*mem_src)(struct jpeg62_decompress *cinfo, const unsigned char *buffer, unsigned long size);
    int (*read_header)(struct jpeg62_decompress *cinfo, jboolean require_image);
    jboolean (*start_decompress)(struct jpeg62_decompress *cinfo);
    void (*crop_scanline)(struct jpeg62_decompress *cinfo, jdimension *xoffset, jdimension *width);
    jdimension (*skip_scanlines)(struct jpeg62_decompress *cinfo, jdimension num_lines);
    jdimension (*read_scanlines)(struct jpeg62_decompress *cinfo, unsigned char **scanlines,
                                 jdimension max_lines);
    jboolean (*finish_decompress)(struct jpeg62_decompress *cinfo);
};

#endif
