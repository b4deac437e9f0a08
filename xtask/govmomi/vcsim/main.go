// vcsim for vmw's test bed: VMware's vCenter simulator (the simulator package
// of the govmomi module pinned in ../go.mod) behind a small command line.
//
// Since govmomi v0.47 the upstream vcsim main package lives in a nested module
// with a local replace directive, which `go install <path>@<version>` cannot
// build from the module proxy. This front end exposes the options vmw's tests
// use, under the same names and with the same output as upstream vcsim:
//
//	vcsim [-l 127.0.0.1:8989] [-username U -password P] [-standalone-host N]
//	      [-cluster N] [-host N] [-vm N] [-pool N] [-folder N] [-ds N] [-dc N]
//	      [-delay MS] [-method-delay Method:MS,...] [-session-idle-timeout D]
//	      [-E FIFO] [-tls=false]
//	vcsim version
//
// -session-idle-timeout (a Go duration such as 2s) makes the simulator drop
// sessions idle for longer than that, as vCenter does after its own idle
// timeout; by default sessions never expire. It sets the simulator's
// `config.vmacore.soap.sessionTimeout` option, which its SessionManager reads
// at every login.
//
// Once listening it prints `export GOVC_URL=<url> GOVC_SIM_PID=<pid>` (to
// stdout, or to the file named by -E) and serves until SIGINT or SIGTERM.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

const govmomiModule = "github.com/vmware/govmomi"

// frontEndRevision grows when this front end gains options, so that vmw's
// xtask can tell an older build of it from this one.
const frontEndRevision = 2

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "vcsim: %v\n", err)
		os.Exit(1)
	}
}

// govmomiVersion is the version of the govmomi module linked into this binary.
func govmomiVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == govmomiModule {
			return dep.Version
		}
	}
	return "unknown"
}

// parseMethodDelays reads "Method:ms,Method:ms" into a map.
func parseMethodDelays(spec string) (map[string]int, error) {
	delays := map[string]int{}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, ms, found := strings.Cut(item, ":")
		if !found || name == "" {
			return nil, fmt.Errorf("-method-delay entry %q is not Method:milliseconds", item)
		}
		n, err := strconv.Atoi(ms)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("-method-delay entry %q: %q is not a number of milliseconds", item, ms)
		}
		delays[name] = n
	}
	return delays, nil
}

func run() error {
	model := simulator.VPX()

	flag.IntVar(&model.Datacenter, "dc", model.Datacenter, "number of datacenters")
	flag.IntVar(&model.Cluster, "cluster", model.Cluster, "number of clusters")
	flag.IntVar(&model.ClusterHost, "host", model.ClusterHost, "number of hosts per cluster")
	flag.IntVar(&model.Host, "standalone-host", model.Host, "number of standalone hosts")
	flag.IntVar(&model.Datastore, "ds", model.Datastore, "number of local datastores")
	flag.IntVar(&model.Machine, "vm", model.Machine, "number of virtual machines per resource pool")
	flag.IntVar(&model.Pool, "pool", model.Pool, "number of resource pools per compute resource")
	flag.IntVar(&model.Folder, "folder", model.Folder, "number of folders")
	flag.IntVar(&model.DelayConfig.Delay, "delay", model.DelayConfig.Delay, "delay in ms added to every method")
	methodDelay := flag.String("method-delay", "", "per-method delays, as Method:ms,Method:ms")
	listen := flag.String("l", "127.0.0.1:8989", "listen address (port 0 picks a free port)")
	username := flag.String("username", "", "the only username accepted (default: any)")
	password := flag.String("password", "", "the only password accepted (default: any)")
	envOut := flag.String("E", "-", "where to write the export line: - for stdout, else a file or fifo")
	useTLS := flag.Bool("tls", true, "serve https with a self-signed certificate")
	idleTimeout := flag.Duration("session-idle-timeout", 0, "drop sessions idle for longer than this (0: never)")
	flag.Parse()

	if flag.Arg(0) == "version" {
		fmt.Printf("Build Version: %s\nvmw front end: %d\n", govmomiVersion(), frontEndRevision)
		return nil
	}
	if *idleTimeout < 0 {
		return fmt.Errorf("-session-idle-timeout %s is negative", *idleTimeout)
	}
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", flag.Arg(0))
	}

	if *methodDelay != "" {
		delays, err := parseMethodDelays(*methodDelay)
		if err != nil {
			return err
		}
		model.DelayConfig.MethodDelay = delays
		simulator.TaskDelay.MethodDelay = delays
	}

	model.ServiceContent.About.FullName += " (govmomi simulator)"
	if err := model.Create(); err != nil {
		return fmt.Errorf("creating the inventory: %w", err)
	}
	defer model.Remove()

	if *idleTimeout > 0 {
		options := model.Map().OptionManager()
		res := options.UpdateOptions(&types.UpdateOptions{
			This: options.Reference(),
			ChangedValue: []types.BaseOptionValue{&types.OptionValue{
				Key:   "config.vmacore.soap.sessionTimeout",
				Value: idleTimeout.String(),
			}},
		})
		if fault := res.Fault(); fault != nil {
			return fmt.Errorf("setting the session idle timeout: %v", fault.VimFault())
		}
	}

	listenURL := &url.URL{Host: *listen}
	if *username != "" || *password != "" {
		listenURL.User = url.UserPassword(*username, *password)
	}
	model.Service.Listen = listenURL
	if *useTLS {
		model.Service.TLS = new(tls.Config)
	}
	server := model.Service.NewServer()
	defer server.Close()

	out := os.Stdout
	if *envOut != "-" {
		f, err := os.OpenFile(*envOut, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		out = f
	}
	if _, err := fmt.Fprintf(out, "export GOVC_URL=%s GOVC_SIM_PID=%d\n", server.URL, os.Getpid()); err != nil {
		return err
	}
	if out != os.Stdout {
		if err := out.Close(); err != nil {
			return err
		}
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	return nil
}
