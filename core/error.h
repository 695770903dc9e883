// The exception types of libgpudl (defined with the kernels, the lowest layer, and re-exported).
#pragma once

#include "gpudl/kernels/error.h"
