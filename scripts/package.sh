#!/usr/bin/env bash
# Builds the Debian package: a RelWithDebInfo build (the flags the tests run; cpack strips it)
# with every driver in build-pkg/, configured for /usr, then cpack -G DEB. Prints the path of
# the .deb. Runs on the Debian release the package is for (its Depends come from this machine's
# libraries, through dpkg-shlibdeps).
#   ./scripts/package.sh            -> build-pkg/interactor-connector_<version>-1_<arch>.deb
# Install it with: apt install ./build-pkg/interactor-connector_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
command -v dpkg-shlibdeps >/dev/null || { echo "package.sh: dpkg-shlibdeps is missing (apt-get install dpkg-dev)" >&2; exit 1; }
cmake -S . -B build-pkg -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCN_TESTS=OFF -DCMAKE_INSTALL_PREFIX=/usr \
  -DCN_DRIVER_POSTGRES=ON -DCN_DRIVER_MYSQL=ON -DCN_DRIVER_MONGODB=ON >/dev/null
cmake --build build-pkg -j"$(nproc)"
(cd build-pkg && cpack -G DEB >/dev/null)
ls "$PWD"/build-pkg/interactor-connector_*.deb
