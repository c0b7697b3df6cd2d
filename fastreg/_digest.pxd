# Declarations of fastreg._digest, shared with any Cython module that wants to cimport the hashers.
cimport cython

cdef extern from "openssl/sha.h" nogil:
    # OpenSSL's low-level contexts (deprecated in 3.0 but present; built with -Wno-deprecated-declarations).
    # SHA256: h[] are the state words as numbers; Nl/Nh the low/high 32 bits of the BIT count;
    # data[] the pending (not yet compressed) block bytes in raw byte order; num how many are pending.
    ctypedef struct SHA256_CTX:
        unsigned int h[8]
        unsigned int Nl
        unsigned int Nh
        unsigned int data[16]
        unsigned int num
        unsigned int md_len

    # SHA512: h[] 64-bit words, Nl/Nh the low/high 64 bits of the bit count, u.p the pending bytes.
    ctypedef union SHA512_CTX_u:
        unsigned long long d[16]
        unsigned char p[128]

    ctypedef struct SHA512_CTX:
        unsigned long long h[8]
        unsigned long long Nl
        unsigned long long Nh
        SHA512_CTX_u u
        unsigned int num
        unsigned int md_len

    int SHA256_Init(SHA256_CTX *c)
    int SHA256_Update(SHA256_CTX *c, const void *data, size_t len)
    int SHA256_Final(unsigned char *md, SHA256_CTX *c)
    int SHA512_Init(SHA512_CTX *c)
    int SHA512_Update(SHA512_CTX *c, const void *data, size_t len)
    int SHA512_Final(unsigned char *md, SHA512_CTX *c)


cdef class sha256:
    cdef SHA256_CTX _ctx
    cdef cython.pymutex _lock


cdef class sha512:
    cdef SHA512_CTX _ctx
    cdef cython.pymutex _lock


cpdef tuple parse_range(str value, object size)
cpdef tuple parse_content_range(str value)
cpdef str format_content_range(object start_, object end_, object size)
