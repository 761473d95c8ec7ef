/* version: dvsnap's version, defined in this one place. `dvsnap --version` prints
 * "dvsnap DVSNAP_VERSION". A build may set it from outside (-DDVSNAP_VERSION='"X.Y.Z"'), e.g.
 * from a package's changelog; without that, this default is the version. No code, no threads. */
#ifndef DVSNAP_VERSION_H
#define DVSNAP_VERSION_H

#ifndef DVSNAP_VERSION
#define DVSNAP_VERSION "0.1.0"
#endif

#endif
