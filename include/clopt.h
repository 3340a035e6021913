/* clopt: the Keras optimizer API in C11 on OpenCL. Umbrella header. */
#ifndef CLOPT_H
#define CLOPT_H

#include "clopt/version.h"
#include "clopt/status.h"
#include "clopt/context.h"
#include "clopt/variable.h"
#include "clopt/optimizer.h"
#include "clopt/optimizer_class.h"
#include "clopt/checkpoint.h"
#include "clopt/distribute.h"

#endif
