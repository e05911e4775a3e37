/* The grader's own Windows-side program, built with mingw-w64 once per
 * machine and run under Wine beside learners' programs (named sections live
 * inside the wineserver, where only a Windows program can see them).
 *
 *   labgrade-win probe NAME HEAD   what the section NAME is: one line
 *                                  "absent" or "size=N head=HEX"
 *   labgrade-win writer NAME SIZE  the reference writer: creates NAME with
 *                                  SIZE bytes, writes $LABGRADE_REF_MESSAGE
 *                                  and a NUL, holds it until a line or end
 *                                  of file arrives on stdin
 *   labgrade-win reader NAME SIZE  the reference reader: prints
 *                                  "Data from shared memory: TEXT"
 *   labgrade-win serve             the probe, resident: for each line
 *                                  "HEAD<TAB>NAME" on stdin, one probe
 *                                  line on stdout (a Wine program takes
 *                                  30-80 ms to start; a line, well under 1)
 *
 * Exit status 0 on success, 1 with a line on stderr otherwise. */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, const char *name) {
    fprintf(stderr, "labgrade-win: %s %s: error %lu\n", what, name, GetLastError());
    return 1;
}

/* The bytes of a view up to its first NUL, at most `size`. */
static size_t text_length(const char *view, size_t size) {
    const char *nul = memchr(view, 0, size);
    return nul ? (size_t)(nul - view) : size;
}

static int probe(const char *name, unsigned long head) {
    HANDLE h = OpenFileMappingA(FILE_MAP_READ, FALSE, name);
    if (!h) {
        DWORD e = GetLastError();
        if (e == ERROR_FILE_NOT_FOUND) {
            printf("absent\n");
            return 0;
        }
        return fail("OpenFileMapping", name);
    }
    const unsigned char *view = MapViewOfFile(h, FILE_MAP_READ, 0, 0, 0);
    if (!view) {
        CloseHandle(h);
        return fail("MapViewOfFile", name);
    }
    MEMORY_BASIC_INFORMATION info;
    SIZE_T size = 0;
    if (VirtualQuery(view, &info, sizeof info) == sizeof info)
        size = info.RegionSize;
    printf("size=%llu head=", (unsigned long long)size);
    for (SIZE_T i = 0; i < head && i < size; i++)
        printf("%02x", view[i]);
    printf("\n");
    UnmapViewOfFile(view);
    CloseHandle(h);
    return 0;
}

static int writer(const char *name, unsigned long long size) {
    const char *message = getenv("LABGRADE_REF_MESSAGE");
    if (!message)
        message = "Shared Memory Data!";
    if (size < strlen(message) + 1) {
        fprintf(stderr, "labgrade-win: size %llu cannot hold the message\n", size);
        return 1;
    }
    HANDLE h = CreateFileMappingA(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE,
                                  (DWORD)(size >> 32), (DWORD)size, name);
    if (!h)
        return fail("CreateFileMapping", name);
    if (GetLastError() == ERROR_ALREADY_EXISTS) {
        fprintf(stderr, "labgrade-win: %s already exists\n", name);
        CloseHandle(h);
        return 1;
    }
    char *view = MapViewOfFile(h, FILE_MAP_ALL_ACCESS, 0, 0, 0);
    if (!view) {
        CloseHandle(h);
        return fail("MapViewOfFile", name);
    }
    memcpy(view, message, strlen(message) + 1);
    int c;
    while ((c = getchar()) != EOF && c != '\n')
        ;
    UnmapViewOfFile(view);
    CloseHandle(h);
    return 0;
}

static int reader(const char *name, unsigned long long size) {
    HANDLE h = OpenFileMappingA(FILE_MAP_READ, FALSE, name);
    if (!h)
        return fail("OpenFileMapping", name);
    const char *view = MapViewOfFile(h, FILE_MAP_READ, 0, 0, 0);
    if (!view) {
        CloseHandle(h);
        return fail("MapViewOfFile", name);
    }
    MEMORY_BASIC_INFORMATION info;
    SIZE_T region = size;
    if (VirtualQuery(view, &info, sizeof info) == sizeof info && info.RegionSize < region)
        region = info.RegionSize;
    size_t n = text_length(view, region);
    printf("Data from shared memory: %.*s\n", (int)n, view);
    UnmapViewOfFile(view);
    CloseHandle(h);
    return 0;
}

static int serve(void) {
    char line[1024];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = 0;
        char *tab = strchr(line, '\t');
        if (!tab) {
            printf("bad request\n");
        } else {
            *tab = 0;
            if (probe(tab + 1, strtoul(line, NULL, 10)) != 0)
                printf("failed %lu\n", GetLastError());
        }
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "serve"))
        return serve();
    if (argc != 4) {
        fprintf(stderr, "usage: labgrade-win probe|writer|reader NAME N\n");
        return 2;
    }
    unsigned long long n = strtoull(argv[3], NULL, 10);
    if (!strcmp(argv[1], "probe"))
        return probe(argv[2], (unsigned long)n);
    if (!strcmp(argv[1], "writer"))
        return writer(argv[2], n);
    if (!strcmp(argv[1], "reader"))
        return reader(argv[2], n);
    fprintf(stderr, "labgrade-win: unknown mode %s\n", argv[1]);
    return 2;
}
