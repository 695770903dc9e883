// Small formatting helpers for messages: byte counts.
#pragma once

#include <cstddef>
#include <string>

namespace gpudl {

// "512 B", "1.5 KiB", "20.0 MiB", "1.25 GiB".
std::string format_bytes(std::size_t bytes);

}  // namespace gpudl

namespace gpudl {

// A number in "%g" form with `digits` significant digits: 0.01 -> "0.01", 1e-05 -> "1e-05".
std::string format_number(double v, int digits = 6);

}  // namespace gpudl
