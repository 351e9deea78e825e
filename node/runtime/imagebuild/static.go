package imagebuild

import (
	"io/fs"
	"path"
)

// BusyboxApplets are the commands linked to busybox in Busybox layers:
// enough for exec probes, `exec -- cat /etc/hostname` and shell debugging.
var BusyboxApplets = []string{
	"sh", "cat", "ls", "echo", "env", "hostname", "id", "ps", "sleep", "touch",
	"rm", "mkdir", "wget", "nc", "grep", "head", "tail", "true", "false", "kill",
}

// Busybox returns a base layer with a statically linked busybox (host file
// at busybox, e.g. /bin/busybox from Debian's busybox-static) and its applets
// under /bin, plus /tmp (sticky), /etc/passwd and /etc/group.
func Busybox(busybox string) []File {
	files := []File{
		{Path: "/bin/busybox", Source: busybox, Mode: 0o755},
		{Path: "/tmp", Dir: true, Mode: 0o777 | fs.ModeSticky},
		{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), Mode: 0o644},
		{Path: "/etc/group", Data: []byte("root:x:0:\nnogroup:x:65534:\n"), Mode: 0o644},
		{Path: "/root", Dir: true, Mode: 0o700},
	}
	for _, a := range BusyboxApplets {
		files = append(files, File{Path: "/bin/" + a, Link: "busybox"})
	}
	return files
}

// Static returns an image running one statically linked program (host file
// at binary), installed as /bin/<base name> and used as the entrypoint, on
// top of the given base layers (for example Busybox).
func Static(name, binary string, base ...[]File) Image {
	target := "/bin/" + path.Base(binary)
	layers := append(append([][]File{}, base...), []File{{Path: target, Source: binary, Mode: 0o755}})
	return Image{
		Name:       name,
		Layers:     layers,
		Entrypoint: []string{target},
		Env:        []string{"PATH=/bin"},
	}
}
