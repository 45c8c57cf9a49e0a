process SPATIALDOMAINS_TO_SPATIALDATA {
    tag "${meta.id}"
    label 'process_low'

    input:
    tuple val(meta), path(h5ads), val(image_samples), path(images, stageAs: 'he?/*')  // one group: every method x seed; sheet images and their samples

    output:
    tuple val(meta), path("*.zarr", type: 'dir'), emit: zarr
    path "versions.yml"                        , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    def pairs  = [image_samples, [images].flatten()].transpose().collect { sample, image -> "--image ${sample}=${image}" }
    """
    export HOME="\$PWD" XDG_CACHE_HOME="\$PWD/.cache" MPLCONFIGDIR="\$PWD/.cache/matplotlib" NUMBA_CACHE_DIR="\$PWD/.cache/numba"

    spatialdomains to-spatialdata \\
        ${[h5ads].flatten().collect { f -> "--clustered ${f}" }.join(' ')} \\
        ${pairs.join(' ')} \\
        --threads ${task.cpus} \\
        -o ${prefix}.zarr \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
        spatialdata: \$(python3 -c 'import spatialdata; print(spatialdata.__version__)')
    END_VERSIONS
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p ${prefix}.zarr
    touch ${prefix}.zarr/zarr.json

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
        spatialdata: stub
    END_VERSIONS
    """
}
