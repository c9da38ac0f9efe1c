// compose-check loads a Compose file the way `docker compose config` does - with compose-go,
// the library docker compose is built on: YAML, interpolation from the environment (and a .env
// file), the Compose Specification schema, env_file resolution, normalisation and the
// consistency checks - then checks every image reference with the grammar docker uses
// (github.com/distribution/reference). It needs no Docker engine.
//
//	compose-check [--profile NAME]... [--image REF]... FILE
//
// On success it prints the normalised project as JSON (`docker compose config --format json`)
// and exits 0. Otherwise it prints one line per problem to stderr and exits 1.
// Rules for images: a registry image names a tag other than "latest" and a sha256 digest
// (name:tag@sha256:digest); an image built from a Dockerfile (build:) names a tag other than
// "latest". --image checks extra references (e.g. a Dockerfile's FROM) by the registry rule.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/distribution/reference"
)

func main() {
	profiles, images, file, err := parseArgs(os.Args[1:])
	if err != nil {
		fail(err)
	}
	project, err := load(file, profiles)
	if err != nil {
		fail(err)
	}
	var problems []error
	for _, name := range project.ServiceNames() {
		service := project.Services[name]
		problems = append(problems, checkService(name, service)...)
	}
	for _, image := range images {
		if err := checkRegistryImage(image); err != nil {
			problems = append(problems, fmt.Errorf("--image: %w", err))
		}
	}
	if len(problems) > 0 {
		fail(errors.Join(problems...))
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fail(err)
	}
	fmt.Println(string(out))
}

func parseArgs(args []string) (profiles, images []string, file string, err error) {
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--profile", "--image":
			if i+1 >= len(args) {
				return nil, nil, "", fmt.Errorf("%s needs a value", args[i])
			}
			if args[i] == "--profile" {
				profiles = append(profiles, args[i+1])
			} else {
				images = append(images, args[i+1])
			}
			i++
		default:
			if file != "" {
				return nil, nil, "", fmt.Errorf("one compose file, got %q and %q", file, args[i])
			}
			file = args[i]
		}
	}
	if file == "" {
		return nil, nil, "", errors.New("usage: compose-check [--profile NAME]... [--image REF]... FILE")
	}
	return profiles, images, file, nil
}

func load(file string, profiles []string) (*types.Project, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	options, err := cli.NewProjectOptions(
		[]string{abs},
		cli.WithWorkingDirectory(filepath.Dir(abs)),
		cli.WithOsEnv,
		cli.WithDotEnv,
		cli.WithProfiles(profiles),
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		return nil, err
	}
	return options.LoadProject(context.Background())
}

func checkService(name string, service types.ServiceConfig) []error {
	if service.Image == "" {
		return []error{fmt.Errorf("service %s: no image", name)}
	}
	if service.Build != nil {
		if err := checkBuiltImage(service.Image); err != nil {
			return []error{fmt.Errorf("service %s: %w", name, err)}
		}
		return nil
	}
	if err := checkRegistryImage(service.Image); err != nil {
		return []error{fmt.Errorf("service %s: %w", name, err)}
	}
	return nil
}

func parse(image string) (reference.Named, error) {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return nil, fmt.Errorf("image %q is not a valid reference: %w", image, err)
	}
	return named, nil
}

func checkRegistryImage(image string) error {
	named, err := parse(image)
	if err != nil {
		return err
	}
	tagged, hasTag := named.(reference.Tagged)
	if !hasTag || tagged.Tag() == "latest" {
		return fmt.Errorf("image %q: name a release tag (not latest)", image)
	}
	if _, hasDigest := named.(reference.Digested); !hasDigest {
		return fmt.Errorf("image %q: pin the tag's digest (name:tag@sha256:...)", image)
	}
	return nil
}

func checkBuiltImage(image string) error {
	named, err := parse(image)
	if err != nil {
		return err
	}
	tagged, hasTag := named.(reference.Tagged)
	if !hasTag || tagged.Tag() == "latest" {
		return fmt.Errorf("built image %q: name a version tag (not latest)", image)
	}
	return nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "compose-check:", err)
	os.Exit(1)
}
