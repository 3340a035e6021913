/* report: train_digits's outputs besides its progress lines: the learning curves as SVG and the
 * per-epoch numbers as JSON, each written whole to a temporary file and renamed into place. */
#ifndef REPORT_H
#define REPORT_H

#include <stdint.h>
#include <stdio.h>

/* One epoch's numbers. seconds: training time since the first epoch, resumed runs included. */
typedef struct epoch_stats {
    float loss, acc, val_loss, val_acc, seconds, samples_per_s;
} epoch_stats;

enum { EPOCH_STATS_FIELDS = 6 };

/* What a run did, for the JSON and the plot's title. */
typedef struct run_info {
    const char *device, *backend, *optimizer_json, *optimizer_class;
    const char *devices; /* --devices, or NULL on one device */
    int replicas;        /* 1 on one device */
    const int *dims;
    int nlayers, batch, ntrain, nheld, seed;
    long long steps;
    long long host_reads; /* reads from device memory clopt made in the run (one per epoch) */
    double target;
    int reached_epoch; /* first epoch at or above the target, 0 if none */
    int interrupted, ok;
    uint64_t weights_hash;
} run_info;

/* Writes the loss and accuracy curves (train and held-out) of epochs[0..n) to `path` as SVG.
 * Returns 0, or -1 after printing why (nothing is left at path then). */
int report_svg(const char *path, const run_info *run, const epoch_stats *epochs, int n);

/* Writes the run and its epochs as JSON to `path` ("-": standard output). Returns 0 or -1. */
int report_json(const char *path, const run_info *run, const epoch_stats *epochs, int n);

/* Atomic output: report_open gives a FILE on "<path>.tmp" (tmp receives that name, at least
 * strlen(path) + 5 bytes); report_commit closes it and renames it to path, or removes it when
 * anything failed. Both return 0 or -1 after printing why. */
FILE *report_open(const char *path, char *tmp, size_t cap);
int report_commit(FILE *f, const char *tmp, const char *path);

#endif
