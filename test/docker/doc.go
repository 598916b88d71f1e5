// Package docker checks the container packaging end to end: it builds the
// static binary and the FROM-scratch image (Dockerfile), starts the
// three-member cluster of docker-compose.yml under a unique project name with
// free host ports, writes through one member, stops another, reads the value
// back through the third, and always tears the project (containers, network,
// volumes) and the image down, even on failure.
//
// It runs when a Docker engine answers `docker info` and docker-compose (or
// the `docker compose` plugin) is installed, and skips with a message saying
// which is missing otherwise; -short or RAFTKV_DOCKER=0 skip it too:
//
//	go test ./test/docker -v
package docker
