/* report: the SVG learning curves and the JSON of a train_digits run (see report.h). */
#include "report.h"
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

FILE *report_open(const char *path, char *tmp, size_t cap) {
    if ((size_t)snprintf(tmp, cap, "%s.tmp", path) >= cap) {
        fprintf(stderr, "train_digits: %s: path too long\n", path);
        return NULL;
    }
    FILE *f = fopen(tmp, "w");
    if (!f) fprintf(stderr, "train_digits: cannot write %s: %s\n", tmp, strerror(errno));
    return f;
}

int report_commit(FILE *f, const char *tmp, const char *path) {
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    if (!bad && rename(tmp, path) == 0) return 0;
    fprintf(stderr, "train_digits: writing %s failed: %s\n", path, strerror(errno));
    remove(tmp);
    return -1;
}

/* Text with XML's special characters escaped. */
static void xml_text(FILE *f, const char *s) {
    for (; s && *s; s++) switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
}

/* epoch_stats's fields with their JSON keys (Keras's history names). */
static const struct {
    const char *key;
    size_t off;
} epoch_fields[EPOCH_STATS_FIELDS] = {
    {"loss", offsetof(epoch_stats, loss)},         {"accuracy", offsetof(epoch_stats, acc)},
    {"val_loss", offsetof(epoch_stats, val_loss)}, {"val_accuracy", offsetof(epoch_stats, val_acc)},
    {"seconds", offsetof(epoch_stats, seconds)},
    {"samples_per_s", offsetof(epoch_stats, samples_per_s)}};

/* Field `off` of e. */
static float field(const epoch_stats *e, size_t off) {
    float v;
    memcpy(&v, (const char *)e + off, sizeof v);
    return v;
}

enum { PLOT_W = 380, PLOT_H = 230, PLOT_TOP = 50, PLOT_LEFT = 60, PLOT_GAP = 90 };

/* One panel at x0: axes, 5 horizontal grid lines from lo to hi, and two curves (train, held-out)
 * taken from the epochs' fields at byte offsets off[0] and off[1]. */
static void svg_panel(FILE *f, int x0, const char *title, double lo, double hi,
                      const epoch_stats *e, int n, const size_t off[2]) {
    static const char *colour[2] = {"#1f77b4", "#ff7f0e"};
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"14\" text-anchor=\"middle\">%s</text>\n",
            x0 + PLOT_W / 2, PLOT_TOP - 10, title);
    for (int i = 0; i <= 4; i++) {
        const double v = lo + (hi - lo) * i / 4;
        const int y = PLOT_TOP + PLOT_H - PLOT_H * i / 4;
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#ddd\"/>\n", x0, y,
                x0 + PLOT_W, y);
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"end\">%.3g</text>\n",
                x0 - 5, y + 4, v);
    }
    const int every = n > 6 ? (n + 4) / 5 : 1; /* about 5 whole-epoch ticks */
    for (int ep = 1; ep <= n; ep += every) {
        const int x = x0 + (n > 1 ? PLOT_W * (ep - 1) / (n - 1) : PLOT_W / 2);
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%d</text>\n",
                x, PLOT_TOP + PLOT_H + 16, ep);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">epoch</text>\n",
            x0 + PLOT_W / 2, PLOT_TOP + PLOT_H + 34);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
               "stroke=\"#444\"/>\n", x0, PLOT_TOP, PLOT_W, PLOT_H);
    for (int c = 0; c < 2; c++) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", colour[c]);
        for (int i = 0; i < n; i++) {
            double v = field(&e[i], off[c]);
            if (!isfinite(v)) v = hi;
            v = v < lo ? lo : v > hi ? hi : v;
            const double x = x0 + (n > 1 ? (double)PLOT_W * i / (n - 1) : PLOT_W / 2.0);
            const double y = PLOT_TOP + PLOT_H - PLOT_H * (v - lo) / (hi - lo);
            fprintf(f, "%s%.1f,%.1f", i ? " " : "", x, y);
        }
        fputs("\"/>\n", f);
    }
}

int report_svg(const char *path, const run_info *run, const epoch_stats *e, int n) {
    char tmp[4096];
    FILE *f = report_open(path, tmp, sizeof tmp);
    if (!f) return -1;
    double lmax = 0, amin = 1;
    for (int i = 0; i < n; i++) {
        const double v[4] = {e[i].loss, e[i].val_loss, e[i].acc, e[i].val_acc};
        for (int j = 0; j < 2; j++)
            if (isfinite(v[j]) && v[j] > lmax) lmax = v[j];
        for (int j = 2; j < 4; j++)
            if (v[j] < amin) amin = v[j];
    }
    lmax = lmax > 0 ? ceil(lmax * 10) / 10 : 1;
    amin = floor(amin * 10) / 10;
    if (amin > 0.9) amin = 0.9;
    const int width = 2 * PLOT_LEFT + 2 * PLOT_W + PLOT_GAP, height = PLOT_TOP + PLOT_H + 80;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            width, height, width, height);
    fprintf(f, "<title>train_digits learning curves</title>\n");
    fprintf(f, "<text x=\"%d\" y=\"18\" font-size=\"13\" text-anchor=\"middle\">MLP ",
            width / 2);
    for (int l = 0; l <= run->nlayers; l++) fprintf(f, "%s%d", l ? "-" : "", run->dims[l]);
    fprintf(f, ", %s, batch %d, seed %d on ", run->optimizer_class, run->batch, run->seed);
    if (run->devices) {
        fprintf(f, "%d replica%s (", run->replicas, run->replicas > 1 ? "s" : "");
        xml_text(f, run->devices);
        fputc(')', f);
    } else {
        xml_text(f, run->device);
    }
    fputs("</text>\n", f);
    const size_t loss[2] = {offsetof(epoch_stats, loss), offsetof(epoch_stats, val_loss)};
    const size_t acc[2] = {offsetof(epoch_stats, acc), offsetof(epoch_stats, val_acc)};
    svg_panel(f, PLOT_LEFT, "loss (cross-entropy)", 0, lmax, e, n, loss);
    svg_panel(f, PLOT_LEFT + PLOT_W + PLOT_GAP, "accuracy", amin, 1, e, n, acc);
    const int ly = height - 16;
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#1f77b4\" "
               "stroke-width=\"2\"/><text x=\"%d\" y=\"%d\" font-size=\"12\">training "
               "(mean over the epoch's batches)</text>\n",
            PLOT_LEFT, ly - 4, PLOT_LEFT + 24, ly - 4, PLOT_LEFT + 30, ly);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#ff7f0e\" "
               "stroke-width=\"2\"/><text x=\"%d\" y=\"%d\" font-size=\"12\">held-out "
               "(%d digits, after the epoch)</text>\n</svg>\n",
            PLOT_LEFT + PLOT_W + PLOT_GAP, ly - 4, PLOT_LEFT + PLOT_W + PLOT_GAP + 24, ly - 4,
            PLOT_LEFT + PLOT_W + PLOT_GAP + 30, ly, run->nheld);
    return report_commit(f, tmp, path);
}

/* A JSON string. */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", (unsigned char)*s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

/* A float as JSON: the shortest form that reads back to the same float32, null if not finite. */
static void json_num(FILE *f, float v) {
    if (isfinite(v))
        fprintf(f, "%.9g", (double)v);
    else
        fputs("null", f);
}

int report_json(const char *path, const run_info *run, const epoch_stats *e, int n) {
    char tmp[4096];
    const int to_stdout = strcmp(path, "-") == 0;
    FILE *f = to_stdout ? stdout : report_open(path, tmp, sizeof tmp);
    if (!f) return -1;
    fputs("{\"device\": ", f);
    json_str(f, run->device);
    fputs(", \"backend\": ", f);
    json_str(f, run->backend);
    fprintf(f, ", \"replicas\": %d, \"devices\": ", run->replicas);
    if (run->devices)
        json_str(f, run->devices);
    else
        fputs("null", f);
    fputs(", \"layers\": [", f);
    for (int l = 0; l <= run->nlayers; l++) fprintf(f, "%s%d", l ? ", " : "", run->dims[l]);
    fprintf(f, "], \"optimizer\": %s, \"batch\": %d, \"seed\": %d, \"train_rows\": %d, "
               "\"held_out_rows\": %d,\n \"epochs\": [",
            run->optimizer_json, run->batch, run->seed, run->ntrain, run->nheld);
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s\n  {\"epoch\": %d", i ? "," : "", i + 1);
        for (int k = 0; k < EPOCH_STATS_FIELDS; k++) {
            fprintf(f, ", \"%s\": ", epoch_fields[k].key);
            json_num(f, field(&e[i], epoch_fields[k].off));
        }
        fputc('}', f);
    }
    fprintf(f, "],\n \"steps\": %lld, \"host_reads\": %lld, \"target\": %g, "
               "\"reached_target_epoch\": ", run->steps, run->host_reads, run->target);
    if (run->reached_epoch)
        fprintf(f, "%d", run->reached_epoch);
    else
        fputs("null", f);
    fprintf(f, ", \"interrupted\": %s, \"ok\": %s, \"weights_fnv1a\": \"%016llx\"}\n",
            run->interrupted ? "true" : "false", run->ok ? "true" : "false",
            (unsigned long long)run->weights_hash);
    if (to_stdout) return fflush(stdout) == 0 ? 0 : -1;
    return report_commit(f, tmp, path);
}
