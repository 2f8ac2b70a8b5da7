/*
 * device.c: what device software does with a dmsc card, through the C API.
 *
 *   ./device STATE
 *
 * STATE is the simulated card's state file (`dmsc sim create`). The other
 * inputs are read from the directory that holds STATE:
 *
 *   package.bin       a firmware package
 *   approvals.txt     the approval files of the package, one path per line
 *                     (relative to the directory)
 *   bootstrap.xml     a bootstrap packet (TNDS)
 *   bootstrap.ctype   its HTTP Content-Type header, with the card's MAC
 *   device/           the device tree (created if missing)
 *
 * It refreshes the device tree from the card, has the card check the
 * package's approvals, and has the card verify the bootstrap packet before
 * it is written into the device tree, printing what it did.
 *
 * Exit status: 0 every call succeeded, the package is approved and the
 * bootstrap packet verified; 2 the package is refused (by the card, or an
 * MCUboot image failing its own checks); 3 the card did not verify the
 * bootstrap MAC; 1 any other failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmsc.h"

#define MAX_APPROVALS 16
#define PATH_SIZE 4096

/* Prints a failed call and frees its error. */
static void report(const char *what, dmsc_error *err)
{
    fprintf(stderr, "%s failed (status %d): %s\n", what, (int)dmsc_error_status(err),
            dmsc_error_message(err));
    dmsc_error_free(err);
}

/* dir + "/" + name into out; 0 on success. */
static int join(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, PATH_SIZE, "%s/%s", dir, name);
    return (n < 0 || n >= PATH_SIZE) ? -1 : 0;
}

/* Reads a whole file into a new buffer (freed by the caller). */
static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t cap = 0, used = 0;
    if (f == NULL) {
        perror(path);
        return NULL;
    }
    for (;;) {
        if (used == cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            unsigned char *nbuf = realloc(buf, ncap + 1);
            if (nbuf == NULL) {
                free(buf);
                fclose(f);
                fprintf(stderr, "%s: out of memory\n", path);
                return NULL;
            }
            buf = nbuf;
            cap = ncap;
        }
        size_t got = fread(buf + used, 1, cap - used, f);
        used += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        perror(path);
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[used] = '\0';
    *len = used;
    return buf;
}

int main(int argc, char **argv)
{
    static char dir[PATH_SIZE], device[PATH_SIZE], package[PATH_SIZE], path[PATH_SIZE];
    static char approval_buf[MAX_APPROVALS][PATH_SIZE];
    const char *approvals[MAX_APPROVALS];
    size_t n_approvals = 0;
    dmsc_error *err = NULL;
    dmsc_card *card = NULL;
    dmsc_verdict *verdict = NULL;
    unsigned char *packet = NULL;
    char *ctype = NULL;
    size_t packet_len = 0, ctype_len = 0;
    int rc = 1;

    if (argc != 2) {
        fprintf(stderr, "usage: %s STATE\n", argv[0]);
        return 1;
    }
    printf("libdmsc %s\n", dmsc_version());

    /* The directory that holds STATE. */
    if (strlen(argv[1]) >= PATH_SIZE) {
        fprintf(stderr, "%s: path too long\n", argv[1]);
        return 1;
    }
    strcpy(dir, argv[1]);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    if (join(device, dir, "device") || join(package, dir, "package.bin")) {
        fprintf(stderr, "%s: path too long\n", dir);
        return 1;
    }

    /* A NULL argument is an error, not a crash. */
    if (dmsc_open_sim(NULL, &err) != NULL || dmsc_error_status(err) != DMSC_ERROR_ARGUMENT) {
        fprintf(stderr, "dmsc_open_sim(NULL) did not report DMSC_ERROR_ARGUMENT\n");
        dmsc_error_free(err);
        return 1;
    }
    printf("open(NULL)      refused as expected: %s\n", dmsc_error_message(err));
    dmsc_error_free(err);
    err = NULL;

    card = dmsc_open_sim(argv[1], &err);
    if (card == NULL) {
        report("dmsc_open_sim", err);
        return 1;
    }

    dmsc_info info;
    if (dmsc_card_info(card, &info, &err) != DMSC_OK) {
        report("dmsc_card_info", err);
        goto out;
    }
    printf("card            %s generation %llu (applet %u.%u)\n", info.card_id,
           (unsigned long long)info.generation, info.applet_major, info.applet_minor);

    /* 1. Refresh the device tree from the card's MOs. */
    bool changed = false;
    if (dmsc_refresh(card, device, &changed, &err) != DMSC_OK) {
        report("dmsc_refresh", err);
        goto out;
    }
    printf("refresh         %s: %s\n", device, changed ? "changed" : "unchanged");

    /* 2. Firmware approval by the card. */
    if (join(path, dir, "approvals.txt")) {
        fprintf(stderr, "%s: path too long\n", dir);
        goto out;
    }
    FILE *list = fopen(path, "r");
    if (list == NULL) {
        perror(path);
        goto out;
    }
    char line[PATH_SIZE];
    while (fgets(line, sizeof line, list) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0')
            continue;
        if (n_approvals == MAX_APPROVALS || join(approval_buf[n_approvals], dir, line)) {
            fprintf(stderr, "%s: too many approvals or path too long\n", path);
            fclose(list);
            goto out;
        }
        approvals[n_approvals] = approval_buf[n_approvals];
        n_approvals++;
    }
    fclose(list);
    if (dmsc_firmware_approve(card, package, approvals, n_approvals, &verdict, &err) != DMSC_OK) {
        report("dmsc_firmware_approve", err);
        goto out;
    }
    /* Installable: approved by the card, and not an MCUboot image that fails its own checks. */
    int approved = dmsc_verdict_approved(verdict) && dmsc_verdict_image_ok(verdict);
    printf("firmware        %s: %s by the card (%zu approvals)%s\n", package,
           dmsc_verdict_approved(verdict) ? "approved" : "REFUSED", n_approvals,
           dmsc_verdict_image_ok(verdict) ? "" : "; the MCUboot image checks FAILED");
    for (size_t i = 0; i < dmsc_verdict_reason_count(verdict); i++)
        printf("  reason        %s\n", dmsc_verdict_reason(verdict, i));
    for (size_t i = 0; i < dmsc_verdict_note_count(verdict); i++)
        printf("  note          %s\n", dmsc_verdict_note(verdict, i));
    if (dmsc_verdict_may_ask_user(verdict))
        printf("  the user may accept it%s; this device rejects it\n",
               dmsc_verdict_user_consent_needs_pin(verdict) ? " after verifying the PIN" : "");

    /* 3. HTTP bootstrap verified by the card, then written into the tree. */
    if (join(path, dir, "bootstrap.xml") || (packet = read_file(path, &packet_len)) == NULL)
        goto out;
    if (join(path, dir, "bootstrap.ctype") ||
        (ctype = (char *)read_file(path, &ctype_len)) == NULL)
        goto out;
    ctype[strcspn(ctype, "\r\n")] = '\0';
    dmsc_status st = dmsc_bootstrap_verify(card, packet, packet_len, ctype, device, &err);
    if (st == DMSC_ERROR_NOT_VERIFIED) {
        printf("bootstrap       NOT verified by the card: %s\n", dmsc_error_message(err));
        dmsc_error_free(err);
        rc = 3;
        goto out;
    }
    if (st != DMSC_OK) {
        report("dmsc_bootstrap_verify", err);
        goto out;
    }
    printf("bootstrap       %zu bytes verified by the card, written into %s\n", packet_len,
           device);

    rc = approved ? 0 : 2;
out:
    free(packet);
    free(ctype);
    dmsc_verdict_free(verdict);
    dmsc_card_close(card);
    return rc;
}
