package storage

// DiskCostIn is what a blob of size bytes costs against the MaxBytes of a
// DiskBlobStore in dir (disk_cost.go), for tests that set a bound in
// blobs.
func DiskCostIn(dir string, size int64) int64 { return diskCost(size, fsBlockBytes(dir)) }
