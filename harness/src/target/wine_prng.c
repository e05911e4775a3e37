/* bcryptprimitives.dll for Wine 8.0, which has none: Rust's standard
 * library (1.78 and later) imports ProcessPrng from it, and a Rust program
 * cannot start without it (exit 53, c0000135). Built with mingw-w64 into
 * each prefix's system32. */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
