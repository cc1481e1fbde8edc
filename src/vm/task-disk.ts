// The task disk: every VM has a second, read-only virtio-blk device (/dev/vdb in the guest) that holds a
// function's deployment package as an ext4 image, mounted read-only at /var/task (Lambda's path). Warm VMs
// start with an empty placeholder and get a package's image before the guest first reads the device. The
// device's size is fixed for all images, because the guest reads a block device's capacity only once, at boot.
export const taskDiskBytes = 512 * 2 ** 20;
export const taskMountPoint = '/var/task';
