// Where the CLI finds the shipped models when --models is not given: ./models, else the source
// tree's (the binary is under build/), else an installation's (PREFIX/share/xcomp/models).
#include <unistd.h>

#include "commands.h"
#include "xcomp/io.h"

namespace xcomp::cli {

std::string default_models_dir() {
  if (is_directory("models/base")) return "models";
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    std::string dir(exe, static_cast<size_t>(n));
    for (int up = 0; up < 3 && dir.find('/') != std::string::npos; ++up) {
      dir = dir.substr(0, dir.rfind('/'));
      if (is_directory(dir + "/models/base")) return dir + "/models";  // the source tree's
      if (is_directory(dir + "/share/xcomp/models/base"))  // installed: PREFIX/bin/xcomp
        return dir + "/share/xcomp/models";
    }
  }
  return "models";
}

}  // namespace xcomp::cli
