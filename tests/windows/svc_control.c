/* Test scaffolding only (never shipped): `svc_control NAME paramchange|interrogate` sends one control
 * to a service, as `sc control NAME paramchange` does on Windows; wine 8's sc.exe has no `control`
 * command. Built with mingw by .ci/windows; exit 0 when the service manager delivered it. */
#include <windows.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    DWORD control;
    if (argc != 3) {
        fprintf(stderr, "usage: svc_control NAME paramchange|interrogate\n");
        return 2;
    }
    if (strcmp(argv[2], "paramchange") == 0)
        control = SERVICE_CONTROL_PARAMCHANGE;
    else if (strcmp(argv[2], "interrogate") == 0)
        control = SERVICE_CONTROL_INTERROGATE;
    else {
        fprintf(stderr, "unknown control %s\n", argv[2]);
        return 2;
    }
    SC_HANDLE scm = OpenSCManagerA(NULL, NULL, SC_MANAGER_CONNECT);
    if (!scm) {
        fprintf(stderr, "OpenSCManager: %lu\n", GetLastError());
        return 1;
    }
    SC_HANDLE svc = OpenServiceA(scm, argv[1], SERVICE_PAUSE_CONTINUE | SERVICE_INTERROGATE);
    if (!svc) {
        fprintf(stderr, "OpenService: %lu\n", GetLastError());
        return 1;
    }
    SERVICE_STATUS status;
    if (!ControlService(svc, control, &status)) {
        fprintf(stderr, "ControlService: %lu\n", GetLastError());
        return 1;
    }
    printf("delivered; state %lu\n", status.dwCurrentState);
    return 0;
}
