@ SPDX-License-Identifier: MIT
@ The model, the image and the reference embedding linked into the firmware's read-only data, as they
@ would sit in flash. The .abc file is 64-byte aligned: abc_model_load_from_memory uses it in place.
@ ABC_FW_MODEL, ABC_FW_IMAGE and ABC_FW_REFERENCE are file names given by the Makefile.
#define ASSET(name, file, align)        \
    .section .rodata.name, "a";         \
    .balign align;                      \
    .global name;                       \
name:                                   \
    .incbin file;                       \
    .global name##_end;                 \
name##_end:

ASSET(abc_fw_model, ABC_FW_MODEL, 64)
ASSET(abc_fw_image, ABC_FW_IMAGE, 4)
ASSET(abc_fw_reference, ABC_FW_REFERENCE, 4)
