/* Stand-in for the subset of CNRT's cnrt.h the MagicMind shim uses (exact
 * upstream spellings, CNRT 6). NOT the Cambricon SDK: see ../README.md. */
#ifndef MM_STANDIN_CNRT_H
#define MM_STANDIN_CNRT_H
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif
typedef enum { cnrtSuccess = 0, cnrtErrorArgsInvalid = 1, cnrtErrorNoMem = 2, cnrtErrorSys = 3 } cnrtRet_t;
typedef enum {
  cnrtMemcpyHostToDev = 0, cnrtMemcpyDevToDev, cnrtMemcpyDevToHost,
  cnrtMemcpyHostToHost, cnrtMemcpyPeerToPeer, cnrtMemcpyNoDirection
} cnrtMemTransDir_t;
#define CNRT_MEM_TRANS_DIR_HOST2DEV ((cnrtMemTransDir_t)0)
#define CNRT_MEM_TRANS_DIR_DEV2DEV ((cnrtMemTransDir_t)1)
#define CNRT_MEM_TRANS_DIR_DEV2HOST ((cnrtMemTransDir_t)2)
#define CNRT_MEM_TRANS_DIR_HOST2HOST ((cnrtMemTransDir_t)3)
struct cnrtQueue;
typedef struct cnrtQueue *cnrtQueue_t;
cnrtRet_t cnrtSetDevice(int ordinal);
cnrtRet_t cnrtGetDeviceCount(unsigned int *count);
cnrtRet_t cnrtMalloc(void **ptr, size_t bytes);
cnrtRet_t cnrtFree(void *ptr);
cnrtRet_t cnrtMemcpy(void *dst, void *src, size_t bytes, cnrtMemTransDir_t dir);
cnrtRet_t cnrtQueueCreate(cnrtQueue_t *q);
cnrtRet_t cnrtQueueSync(cnrtQueue_t q);
cnrtRet_t cnrtQueueDestroy(cnrtQueue_t q);
const char *cnrtGetErrorStr(cnrtRet_t r);
#ifdef __cplusplus
}
#endif
#endif
