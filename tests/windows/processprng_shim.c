/* Test scaffolding only: never shipped, never in a release archive.
 *
 * Rust's std (1.78+) draws its randomness from ProcessPrng in bcryptprimitives.dll, which Windows 10
 * and later have but wine 8 (Debian 12's) does not. .ci/windows builds this file with mingw into a
 * bcryptprimitives.dll placed beside pfgate.exe so the binary runs under wine; it forwards to
 * RtlGenRandom (SystemFunction036 in advapi32), which wine implements. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x7fffffff ? 0x7fffffff : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
