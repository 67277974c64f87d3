/* diag.c — the one way tilec reports an error. */
#include "ir/ir.h"

#include <string.h>

bool diag_error(Diag *d, SrcLoc loc, const char *fmt, ...)
{
    if (!d || d->set) /* the first error is the one the user needs */
        return false;
    d->set = true;
    d->loc = loc;
    if (loc.file) { /* a copy: a kernel's arena holding the name may be freed before the print */
        snprintf(d->file, sizeof d->file, "%s", loc.file);
        d->loc.file = d->file;
    }
    d->hint[0] = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof d->msg, fmt, ap);
    va_end(ap);
    /* One line, always: fold any newline a message picked up. */
    for (char *p = d->msg; *p; p++)
        if (*p == '\n')
            *p = ' ';
    return false;
}

void diag_hint(Diag *d, const char *fmt, ...)
{
    if (!d)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->hint, sizeof d->hint, fmt, ap);
    va_end(ap);
    for (char *p = d->hint; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

const char *diag_format(const Diag *d, char *buf, size_t n)
{
    char where[300] = "";
    if (d->loc.file && d->loc.line > 0)
        snprintf(where, sizeof where, "%s:%d: ", d->loc.file, d->loc.line);
    else if (d->loc.file)
        snprintf(where, sizeof where, "%s: ", d->loc.file);
    snprintf(buf, n, "%s%s%s%s%s", where, d->msg, d->hint[0] ? " (hint: " : "", d->hint, d->hint[0] ? ")" : "");
    return buf;
}

void diag_print(const Diag *d, FILE *f)
{
    char line[1200];
    fprintf(f, "%s\n", diag_format(d, line, sizeof line));
}
