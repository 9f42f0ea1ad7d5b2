/* SPDX-License-Identifier: MIT */
/* Force-included (-include) when the bare-metal example compiles abc.c: the allocator that
 * ABC_MALLOC/ABC_FREE name (firmware.c defines it). */
#include <stddef.h>
void *abc_fw_malloc(size_t size);
void abc_fw_free(void *p);
