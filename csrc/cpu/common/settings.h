// The CPU kernels' switches, framework-free: the SIMD path and the algorithm choices. They are set
// from Python (cnnfast.backends.cpu, seeded once from the environment when cnnfast is imported) and
// held here; the ATen glue takes one snapshot per op call (cpu_settings()) and hands it to the kernels,
// which never read the environment.
#pragma once

#include "cpu/common/capability.h"

namespace cnnfast::cpu {

// An algorithm switch: kAuto takes the measured rule (conv2d/path.h), kOff never, kOn wherever the
// algorithm applies.
enum class Switch : int { kAuto = 0, kOff = 1, kOn = 2 };

struct Settings {
  Capability capability = Capability::kDefault;  // the path in use: min(requested, supported)
  Switch winograd = Switch::kAuto;               // Winograd F(2x2, 3x3) for 3x3 stride-1 layers
  Switch images_per_vector = Switch::kAuto;      // sixteen images per vector for small images
};

// The settings now (each field read once, atomically).
Settings cpu_settings();

// Requests a path; the kernels take the lower of it and supported_capability().
void set_capability(Capability requested);
void set_winograd(Switch s);
void set_images_per_vector(Switch s);

const char* switch_name(Switch s);
// "auto", "on" or "off"; false for any other name.
bool parse_switch(const char* name, Switch* out);

}  // namespace cnnfast::cpu
