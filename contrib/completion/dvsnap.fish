# fish completion for dvsnap (installed as share/fish/vendor_completions.d/dvsnap.fish).
# Commands and their options come from `dvsnap help` and `dvsnap help COMMAND`, so they follow
# the installed program; environments, points and tables come from `dvsnap complete`, which reads
# the repository of the configuration in use (a --config on the line counts) and asks the
# service nothing. The same rules as the bash completion (dvsnap.bash).

function __dvsnap_candidates
    # options whose next word is their value: every option `dvsnap help` shows with one (the
    # same list as dvsnap.bash's, which tests/integration/pkg_completion.sh checks)
    set -l valued --config --now --env --every --concurrency --passes --label --capture-every \
        --cache-size --metrics-listen --max-nodes --threads --target -t --tables -T --confirm -c --reason \
        --for --table --id --where --map --fallback-owner --new-password-file
    set -l words (commandline -opc)
    set -l cur (commandline -ct)
    set -l prog $words[1]
    set -l cfg
    set -l cmd
    set -l i 2
    # global options (and their values), then the command
    while test $i -le (count $words)
        set -l w $words[$i]
        if test "$w" = --config
            set cfg --config $words[(math $i + 1)]
            set i (math $i + 2)
            continue
        end
        if contains -- $w $valued
            set i (math $i + 2)
            continue
        end
        if string match -q -- '-*' $w
            set i (math $i + 1)
            continue
        end
        set cmd $w
        break
    end
    set -l prev $words[-1]
    if contains -- "$prev" --config --map --new-password-file
        __fish_complete_path $cur
        return
    end
    # the global options: the "options:" part of `dvsnap help`; they may come anywhere
    set -l globals ($prog help 2>/dev/null | sed -n '/^options:/,/^$/p' |
        string match -ar -- '--[a-z][a-z-]*')
    if test -z "$cmd"
        # a global option's value (--now TIME): nothing to offer
        contains -- $prev $valued; and return
        if string match -q -- '-*' $cur
            printf '%s\n' $globals | sort -u
        else
            $prog help 2>/dev/null | string replace -rf '^  ([a-z][a-z-]*) .*' '$1'
        end
        return
    end
    # positional arguments of the command before the cursor
    set -l args
    set i (math $i + 1)
    while test $i -le (count $words)
        set -l w $words[$i]
        if contains -- $w $valued
            set i (math $i + 2)
            continue
        end
        string match -q -- '-*' $w; or set -a args $w
        set i (math $i + 1)
    end
    set -l names $prog $cfg complete
    switch $prev
        case --env --target -t --confirm -c
            $names envs 2>/dev/null
            return
        case --tables -T
            if test (count $args) -ge 2
                set -l head (string replace -r '[^,]*$' '' -- $cur)
                for t in ($names tables $args[1] $args[2] 2>/dev/null)
                    echo $head$t
                end
            end
            return
    end
    if contains -- $prev $valued
        return
    end
    if string match -q -- '-*' $cur
        begin
            printf '%s\n' $globals
            $prog help $cmd 2>/dev/null | string match -ar -- '--[a-z][a-z-]*'
        end | sort -u
        return
    end
    switch $cmd:(count $args)
        case env:0
            echo list
        case help:0
            $prog help 2>/dev/null | string replace -rf '^  ([a-z][a-z-]*) .*' '$1'
        case complete:0
            printf '%s\n' envs points tables
        case complete:1
            test "$args[1]" = envs; or $names envs 2>/dev/null
        case complete:2
            test "$args[1]" = tables; and $names points $args[2] 2>/dev/null
        case points:0 cat:0 changes:0 backup:0 forget:0 hold:0 release:0 erase:0 restore:0 'status:*'
            $names envs 2>/dev/null
        case points:1 cat:1 changes:1 forget:1 hold:1 release:1 restore:1
            $names points $args[1] 2>/dev/null
        case cat:2 changes:2
            $names tables $args[1] $args[2] 2>/dev/null
        case mount:0 umount:0
            __fish_complete_directories $cur
    end
end

complete -c dvsnap -f -a '(__dvsnap_candidates)'
