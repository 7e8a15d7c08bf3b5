// Package dirnames lists the names in a directory, unsorted and without
// a stat of each entry: the directories it serves (CAS shards, trash,
// images, /proc) can hold hundreds of thousands of entries, where
// os.ReadDir's sorted DirEntry values would cost memory and time for
// nothing.
package dirnames

import "os"

// Read returns the names in dir, in the order the file system gives them.
func Read(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}
